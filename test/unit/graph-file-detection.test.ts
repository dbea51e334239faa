// Telling a graph file's format from its first bytes (detect): every upload, inspectFile and `snapgraph restore-file`
// asks it, on the event loop, of whatever the file starts with.
import { strict as assert } from 'node:assert';
import { detectGraphFileFormat } from '../../src/graph-files/graph-file-formats';
import { graphmlFormat } from '../../src/graph-files/graphml-format';

const detected = (text: string) => detectGraphFileFormat(Buffer.from(text))?.kind;

describe('graph file detection', () => {
  describe('GraphML: what may come before the root element', () => {
    // Each processing instruction, comment or document type declaration could end at its own end or at any later one:
    // a file that is not GraphML was tried every way (2^n), on the event loop. 30 processing instructions (150 bytes)
    // took 5 s; each one more doubled it, and document types with spaces before their '>' grew faster still.
    it('answers for many processing instructions before something else', () => {
      assert.equal(detected(`${'<?a?>'.repeat(34)}x`), undefined);
      assert.equal(detected(`${'<?a?>'.repeat(34)}<graphml>`), 'GRAPHML');
    });

    it('answers for many comments before something else', () => {
      assert.equal(detected(`${'<!--a-->'.repeat(34)}x`), undefined);
      assert.equal(detected(`${'<!--a-->'.repeat(34)}<graphml>`), 'GRAPHML');
    });

    it('answers for many document type declarations before something else', () => {
      assert.equal(detected(`${'<!DOCTYPE a          >'.repeat(34)}x`), undefined);
      assert.equal(detected(`${'<!DOCTYPE a          >'.repeat(34)}<graphml>`), 'GRAPHML');
    });

    it('still finds the root after a declaration, comments, processing instructions and a document type', () => {
      for (const prolog of [
        '',
        '\uFEFF<?xml version="1.0" encoding="UTF-8"?>\n',
        '<?xml version="1.0"?>\r\n<!-- a - b -- c --->\n<?pi a ? b ?>\n',
        '<?xml version="1.0"?>\n<!DOCTYPE graphml SYSTEM "graphml.dtd">\n',
        '<?xml version="1.0"?>\n<!DOCTYPE graphml [ <!ENTITY x "y"> ]  >\n<!---->',
      ]) {
        for (const root of ['<graphml>', '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">', '<g:graphml/>']) {
          assert.ok(graphmlFormat.detect(Buffer.from(`${prolog}${root}`)), JSON.stringify(prolog + root));
        }
        assert.ok(!graphmlFormat.detect(Buffer.from(`${prolog}<graph>`)), JSON.stringify(`${prolog}<graph>`));
      }
    });
  });
});
