// Preloaded into a test server (`node --require`): its clock runs SNAPGRAPH_TEST_CLOCK_BEHIND_MS behind the real one,
// as a server's does after its system time was stepped back (an NTP correction, a host with a slow clock).
const behindMs = Number(process.env.SNAPGRAPH_TEST_CLOCK_BEHIND_MS ?? 0);
if (behindMs !== 0) {
  const realNow = Date.now;
  Date.now = () => realNow() - behindMs;
}
