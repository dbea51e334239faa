// Mocha's configuration. Test files named on the command line (`npx mocha dist/test/e2e/restore.test.js`) run
// alone; with none, the whole suite runs (`npm test`). A spec in a config file would otherwise be added to them.
const args = process.argv.slice(2);
const namesFiles = args.some((arg, i) => /\.test\.js$/.test(arg) && !['--require', '-r', '--file'].includes(args[i - 1]));

module.exports = {
  ...(namesFiles ? {} : { spec: ['dist/test/**/*.test.js'] }),
  require: ['dist/test/setup.js'],
  timeout: 30000,
  exit: true,
};
