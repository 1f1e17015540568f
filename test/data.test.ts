// Corpus loading, the seeded split, the tokenizers and the resumable batch loader.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BatchLoader, ByteTokenizer, WordTokenizer, brownCorpus, loadTextCorpus, prepareDataset, sequentialBatches,
  splitCorpus, stripBrownTags, tokenizerFromJSON,
} from 'switch-transformer';

describe('Brown corpus', () => {
  it('strips the part-of-speech tags and keeps the words', () => {
    expect(stripBrownTags('\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ``/`` no/at ./.\n\n\tAtlanta\'s/np$ 1/2/cd\n'))
      .toBe("The Fulton County said `` no .\nAtlanta's 1/2");
    const docs = brownCorpus();
    expect(docs).toHaveLength(500);
    expect(docs[0].name).toBe('ca01');
    expect(docs[0].text.startsWith('The Fulton County Grand Jury said Friday')).toBe(true);
    expect(docs.every((d) => !/\/(at|nn|vbd|in)\b/.test(d.text.slice(0, 2000)))).toBe(true);
  });

  it('splits by document, seeded, disjoint and complete', () => {
    const docs = Array.from({ length: 20 }, (_, i) => ({ name: `d${i}`, text: `text ${i}` }));
    const a = splitCorpus(docs, 0.25, 1), b = splitCorpus(docs, 0.25, 1), c = splitCorpus(docs, 0.25, 2);
    expect(a.validation).toHaveLength(5);
    expect(a).toEqual(b);
    expect(c.validation.map((d) => d.name)).not.toEqual(a.validation.map((d) => d.name));
    expect([...a.train, ...a.validation].map((d) => d.name).sort()).toEqual(docs.map((d) => d.name).sort());
    expect(splitCorpus(docs.slice(0, 1), 0.5).validation).toHaveLength(0);
    expect(() => splitCorpus(docs, 1)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
  });
});

describe('text corpora from files', () => {
  it('reads a file or a folder recursively in path order', () => {
    const dir = mkdtempSync(join(tmpdir(), 'corpus-'));
    try {
      mkdirSync(join(dir, 'sub'));
      writeFileSync(join(dir, 'b.txt'), 'beta words');
      writeFileSync(join(dir, 'a.txt'), 'alpha words');
      writeFileSync(join(dir, 'sub', 'c.txt'), 'gamma');
      writeFileSync(join(dir, '.hidden'), 'no');
      expect(loadTextCorpus(dir).map((d) => d.name)).toEqual(['a.txt', 'b.txt', join('sub', 'c.txt')]);
      expect(loadTextCorpus(join(dir, 'a.txt'))[0].text).toBe('alpha words');
      expect(() => loadTextCorpus(join(dir, 'missing'))).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
      const ds = prepareDataset({ corpus: dir, validationFraction: 0.34, seed: 3 });
      expect(ds.validationDocuments).toHaveLength(1);
      expect(ds.train.length + ds.validation.length).toBe(5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('tokenizers', () => {
  it('word level: most frequent lower-cased words, unknown token 0, serialisable', () => {
    const tok = WordTokenizer.fromTexts(['The cat saw the dog .', 'the Dog ran ; a cat'], 3);
    expect(tok.words).toEqual(['<unk>', 'the', 'cat', 'dog']);  // ties broken alphabetically
    expect(Array.from(tok.encode('THE bird cat'))).toEqual([1, 0, 2]);
    expect(tok.decode([1, 3, 0])).toBe('the dog <unk>');
    const again = tokenizerFromJSON(JSON.parse(JSON.stringify(tok.toJSON())));
    expect(again.vocabSize).toBe(4);
    expect(Array.from(again.encode('dog the'))).toEqual([3, 1]);
    expect(() => tokenizerFromJSON({ kind: 'nope' } as never)).toThrow(expect.objectContaining({ code: 'ERR_CHECKPOINT' }));
  });

  it('byte level round-trips UTF-8', () => {
    const tok = new ByteTokenizer();
    const ids = tok.encode('naïve ✓');
    expect(ids.length).toBe(Buffer.byteLength('naïve ✓'));
    expect(tok.decode(ids)).toBe('naïve ✓');
    expect(tok.vocabSize).toBe(256);
  });

  it('the Brown word vocabulary has 8,192 words plus the unknown token', () => {
    const ds = prepareDataset({ validationFraction: 0.1, seed: 0 });
    expect(ds.tokenizer.vocabSize).toBe(8193);
    expect(ds.validationDocuments).toHaveLength(50);
    expect(ds.train.length).toBeGreaterThan(900_000);
    expect(Math.max(...ds.train.subarray(0, 10000))).toBeLessThan(8193);
  });
});

describe('BatchLoader', () => {
  const stream = Int32Array.from({ length: 103 }, (_, i) => i);

  it('serves (B, S) windows with next-token targets, every window once per epoch', () => {
    const loader = new BatchLoader(stream, { batchSize: 3, seqLen: 10, seed: 5 });
    expect(loader.windows).toBe(10);
    const starts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const b = loader.next();
      for (let r = 0; r < 3; r++) {
        const row = b.tokens.subarray(r * 10, r * 10 + 10);
        expect(row[0] % 10).toBe(0);
        expect(Array.from(b.targets.subarray(r * 10, r * 10 + 10))).toEqual(Array.from(row, (t) => t + 1));
        starts.push(row[0]);
      }
    }
    expect(new Set(starts).size).toBe(9);
    expect(loader.state).toEqual({ epoch: 0, cursor: 9 });
    loader.next();  // crosses into epoch 1
    expect(loader.state).toEqual({ epoch: 1, cursor: 2 });
  });

  it('resumes from its state exactly', () => {
    const a = new BatchLoader(stream, { batchSize: 4, seqLen: 7, seed: 9 });
    for (let i = 0; i < 5; i++) a.next();
    const b = new BatchLoader(stream, { batchSize: 4, seqLen: 7, seed: 9 });
    b.state = JSON.parse(JSON.stringify(a.state));
    for (let i = 0; i < 6; i++) expect(b.next()).toEqual(a.next());
    expect(() => { b.state = { epoch: 0, cursor: 999 }; }).toThrow(expect.objectContaining({ code: 'ERR_CHECKPOINT' }));
  });

  it('is seeded, rejects bad options, and evaluates in order', () => {
    const x = new BatchLoader(stream, { batchSize: 2, seqLen: 5, seed: 1 }).next();
    const y = new BatchLoader(stream, { batchSize: 2, seqLen: 5, seed: 2 }).next();
    expect(x.tokens).not.toEqual(y.tokens);
    expect(() => new BatchLoader(stream, { batchSize: 0, seqLen: 5 })).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
    expect(() => new BatchLoader(Int32Array.of(1, 2), { batchSize: 1, seqLen: 5 })).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE' }));
    const batches = [...sequentialBatches(stream, 3, 10)];
    expect(batches).toHaveLength(3);
    expect(batches[1].tokens[0]).toBe(30);
    expect([...sequentialBatches(stream, 3, 10, 2)]).toHaveLength(2);
  });
});
