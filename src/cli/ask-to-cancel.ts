// The question `snapgraph restore-file` asks on a terminal after Ctrl-C while the server restores.
import { createInterface } from 'node:readline/promises';

/**
 * Whether the user answers yes to cancelling the restore on the server. Ctrl-C or Ctrl-D at the question is a no:
 * readline then closes, and rejects the question (on a terminal) or leaves it unanswered for ever (elsewhere), where
 * the command must still go on to say that the restore continues and how to cancel it.
 */
export async function askToCancel(input: NodeJS.ReadableStream = process.stdin, output: NodeJS.WritableStream = process.stderr): Promise<boolean> {
  const prompt = createInterface({ input, output });
  const closed = new Promise<string>((resolve) => prompt.once('close', () => resolve('')));
  let answered = false;
  try {
    const question = prompt.question('\ncancel the restore on the server (the instance keeps its data)? [y/N] ').then(
      (answer) => ((answered = true), answer),
      () => '',
    );
    const answer = await Promise.race([question, closed]);
    if (!answered) output.write('\n'); // what the command says next starts on a line of its own
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    prompt.close();
  }
}
