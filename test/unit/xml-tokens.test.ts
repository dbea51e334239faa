// The streaming XML tokenizer GraphML is read with: the same tokens whatever the pieces, decoded text, line numbers,
// and well-formedness errors naming the line.
import { strict as assert } from 'node:assert';
import { decodeEntities, escapeXml, MAX_TOKEN_CHARS, XmlSyntaxError, type XmlToken, XmlTokenizer } from '../../src/graph-files/xml-tokens';

function tokensOf(pieces: string[]): XmlToken[] {
  const tokenizer = new XmlTokenizer();
  const tokens = pieces.flatMap((piece) => tokenizer.write(piece));
  return merged([...tokens, ...tokenizer.end()]);
}

/** Adjacent text tokens joined (how many pieces a text comes in depends on the pieces and CDATA). */
function merged(tokens: XmlToken[]): XmlToken[] {
  const out: XmlToken[] = [];
  for (const token of tokens) {
    const last = out[out.length - 1];
    if (token.kind === 'text' && last?.kind === 'text') out[out.length - 1] = { ...last, text: last.text + token.text };
    else out.push(token);
  }
  return out;
}

function syntaxError(text: string): XmlSyntaxError {
  try {
    tokensOf([text]);
  } catch (error) {
    assert.ok(error instanceof XmlSyntaxError, String(error));
    return error;
  }
  assert.fail(`no error for ${JSON.stringify(text)}`);
}

const DOCUMENT =
  '\uFEFF<?xml version="1.0" encoding="UTF-8"?>\r\n' +
  '<!-- a comment with <tags> and & -->\r\n' +
  '<root a="1" b=\'two &amp; &quot;three&quot;\' c="x&#10;y\tz">\r\n' +
  '  <item id="n0"><data key="k">Tom &amp; &lt;Jerry&gt; &#x1F600;&#233;</data></item>\n' +
  '  <?processing instruction?>\n' +
  '  <empty/><data key="c"><![CDATA[<not> & markup]]> and more</data>\r' +
  '<last\n   attr = "spaced"\n/>\n' +
  '</root>\n<!-- trailing -->\n';

describe('XML tokens (GraphML reading)', () => {
  it('gives the same tokens whether the file comes whole, in lines or one character at a time', () => {
    const whole = tokensOf([DOCUMENT]);
    assert.deepEqual(tokensOf(DOCUMENT.split(/(?<=\n)/)), whole);
    assert.deepEqual(tokensOf([...DOCUMENT]), whole);
    // A CR at the end of one piece and the LF at the start of the next are one line end.
    assert.deepEqual(tokensOf(DOCUMENT.split(/(?<=\r)/)), whole);
  });

  it('decodes attributes, entities, character references and CDATA, and numbers lines from 1', () => {
    const tokens = tokensOf([DOCUMENT]).filter((t) => t.kind !== 'text' || t.text.trim() !== '');
    const root = tokens[0];
    assert.equal(root.kind, 'open');
    assert.equal(root.kind === 'open' && root.name, 'root');
    assert.equal(root.line, 3);
    // Literal tabs and line ends in attribute values are spaces; character references keep what they name.
    assert.deepEqual(root.kind === 'open' && [...root.attributes], [['a', '1'], ['b', 'two & "three"'], ['c', 'x\ny z']]);
    assert.deepEqual(
      tokens.slice(1).map((t) => (t.kind === 'text' ? ['text', t.text, t.line] : [t.kind, t.name, t.line])),
      [
        ['open', 'item', 4],
        ['open', 'data', 4],
        ['text', 'Tom & <Jerry> \u{1F600}\u00e9', 4],
        ['close', 'data', 4],
        ['close', 'item', 4],
        ['open', 'empty', 6],
        ['close', 'empty', 6],
        ['open', 'data', 6],
        ['text', '<not> & markup and more', 6],
        ['close', 'data', 6],
        ['open', 'last', 7],
        ['close', 'last', 7],
        ['close', 'root', 10],
      ],
    );
  });

  it('keeps text exactly, CRLF and CR as LF (XML line-end handling)', () => {
    const tokens = tokensOf(['<a>  one\r\ntwo\rthree\n </a>']);
    assert.deepEqual(tokens[1], { kind: 'text', text: '  one\ntwo\nthree\n ', line: 1 });
  });

  it('what escapeXml writes reads back as it was', () => {
    const text = 'a & b < c > d "e" \'f\'\ttab\nline\rcr ]]> \u{1F600}';
    const tokens = tokensOf([`<a v="${escapeXml(text, true)}">${escapeXml(text)}</a>`]);
    assert.equal(tokens[0].kind === 'open' && tokens[0].attributes.get('v'), text);
    assert.equal(tokens[1].kind === 'text' && tokens[1].text, text);
  });

  const refused: Array<[string, string, RegExp, number]> = [
    ['a mismatched end tag', '<a>\n<b>\n</a>', /<\/a> where <\/b> was expected/, 3],
    ['an element left open', '<a>\n<b></b>\n', /the file ends inside <a>/, 3],
    ['no root element', '<?xml version="1.0"?>\n', /no root element/, 2],
    ['an unknown entity', '<a>\n&nbsp;</a>', /unknown entity &nbsp;/, 2],
    ['a bare ampersand', '<a>\nTom & Jerry</a>', /'&' that starts no entity/, 2],
    ['a reference to a character XML forbids', '<a>&#0;</a>', /&#0; names a character XML does not allow/, 1],
    ["'<' in an attribute value", '<a>\n<b c="<"/></a>', /'<' inside an attribute value/, 2],
    ['an unquoted attribute', '<a b=1></a>', /malformed attribute/, 1],
    ['a repeated attribute', '<a b="1" b="2"></a>', /the attribute b twice/, 1],
    ['text after the root', '<a></a>\nmore', /text outside the root element/, 2],
    ['a second root', '<a></a>\n<b></b>', /<b> after the root element has ended/, 2],
    ['a document type with entity definitions', '<!DOCTYPE a [<!ENTITY x "y">]>\n<a>&x;</a>', /internal subset/, 1],
    ['a control character', '<a>\n\u0001</a>', /U\+0001 is not allowed in XML/, 2],
    ['a tag cut off by the end of the file', '<a>\n<b c="1"', /the file ends inside markup/, 2],
  ];
  for (const [what, text, message, line] of refused) {
    it(`refuses ${what}, naming the line`, () => {
      const error = syntaxError(text);
      assert.match(error.problem, message);
      assert.equal(error.line, line);
    });
  }

  it('holds at most one token: a text longer than the limit is refused, not buffered', () => {
    const tokenizer = new XmlTokenizer();
    tokenizer.write('<a>');
    const piece = 'x'.repeat(1024 * 1024);
    assert.throws(() => {
      for (let written = 0; written <= MAX_TOKEN_CHARS; written += piece.length) tokenizer.write(piece);
    }, /a text is longer than/);
  });

  describe('time linear in the size of a token', () => {
    // Every reference, and every attribute, counted the lines from the start of its text or tag to itself (for a message
    // it would need only on an error): a text of n references took time in n², on the event loop (a restore, the
    // census of an upload, inspectFile). 2 MiB of &amp; took 12 s; the ones here, minutes.
    it('decodes a text of a million references', () => {
      const [, text] = tokensOf([`<a>${'&amp;'.repeat(1_000_000)}</a>`]);
      assert.equal(text.kind === 'text' && text.text, '&'.repeat(1_000_000));
    });

    it('reads a tag of 800,000 attributes', () => {
      const [open] = tokensOf([`<a ${Array.from({ length: 800_000 }, (_, i) => `a${i}="&lt;"`).join('\n')}></a>`]);
      assert.equal(open.kind === 'open' && open.attributes.size, 800_000);
    });

    it('reads an attribute value and a comment of 48 MiB that come in pieces of 16 KiB', () => {
      // Each piece was joined to the unfinished tag before it, which was then copied whole: 32 MiB in 64 KiB pieces took 9 s.
      const tokenizer = new XmlTokenizer();
      const piece = 'x'.repeat(16 * 1024);
      const pieces = 48 * 64;
      const tokens = tokenizer.write('<a b="');
      for (let i = 0; i < pieces; i++) tokens.push(...tokenizer.write(piece));
      tokens.push(...tokenizer.write('"><!-- '));
      for (let i = 0; i < pieces; i++) tokens.push(...tokenizer.write(piece));
      tokens.push(...tokenizer.write(' --></a>'), ...tokenizer.end());
      assert.deepEqual(tokens.map((token) => token.kind), ['open', 'close']);
      assert.equal(tokens[0].kind === 'open' && tokens[0].attributes.get('b')?.length, pieces * piece.length);
    });

    it('still names the line of a bad reference in a text or an attribute', () => {
      const text = syntaxError(`<a>${'&amp;\n'.repeat(1000)}&nbsp;</a>`);
      assert.deepEqual([text.line, text.problem], [1001, 'unknown entity &nbsp; (XML knows &lt; &gt; &amp; &quot; &apos; and &#…;)']);
      // The reference is on line 1005 (the value's line breaks count, though they read as spaces); 1002 was named.
      const attributes = Array.from({ length: 1000 }, (_, i) => ` c${i}="&lt;"\n`).join('');
      const attribute = syntaxError(`<a\n b="1"\n${attributes} d="x\n&amp;\n&nbsp;"></a>`);
      assert.deepEqual([attribute.line, attribute.problem], [1005, 'unknown entity &nbsp; (XML knows &lt; &gt; &amp; &quot; &apos; and &#…;)']);
    });
  });

  it('decodeEntities leaves text without references as it is', () => {
    assert.equal(decodeEntities('plain', 1), 'plain');
    assert.equal(decodeEntities('&lt;&gt;&amp;&quot;&apos;&#65;&#x42;', 1), '<>&"\'AB');
  });
});
