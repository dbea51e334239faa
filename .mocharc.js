// Mocha's configuration. Test files named on the command line (`npx mocha dist/test/e2e/restore.test.js`) run
// alone; with none, the whole suite runs (`npm test`), two files at a time (SNAPGRAPH_TEST_JOBS): most of a file's
// time is spent waiting on the servers it runs, restarts and timers. A spec in a config file would otherwise be added
// to named files.
const args = process.argv.slice(2);
const namesFiles = args.some((arg, i) => /\.test\.js$/.test(arg) && !['--require', '-r', '--file'].includes(args[i - 1]));

module.exports = {
  ...(namesFiles ? {} : { spec: ['dist/test/**/*.test.js'], parallel: true, jobs: Number(process.env.SNAPGRAPH_TEST_JOBS || 2) }),
  require: ['dist/test/setup.js'],
  timeout: 30000,
  exit: true,
};
