// A corpus made ready for training: split by document, tokenizer built on the training split,
// both splits encoded as token streams (documents concatenated in corpus order).
import { rangeError } from '../errors.js';
import { brownCorpus, loadTextCorpus, splitCorpus, type TextDocument } from './corpus.js';
import { ByteTokenizer, WordTokenizer, tokenizerFromJSON, type Tokenizer, type TokenizerJSON } from './tokenizer.js';

export interface DatasetOptions {
  /** 'brown' (default) or a path to a text file or a folder of text files. */
  corpus?: string;
  tokenizer?: 'word' | 'byte';
  /** Words in the word-level vocabulary besides the unknown token (default 8192). */
  vocabWords?: number;
  validationFraction?: number;
  /** Seeds the split. */
  seed?: number;
  /** Rebuild a saved tokenizer instead of building one (a resumed run). */
  tokenizerJSON?: TokenizerJSON;
}

export interface Dataset {
  tokenizer: Tokenizer;
  train: Int32Array;
  validation: Int32Array;
  trainDocuments: string[];
  validationDocuments: string[];
}

export function prepareDataset(options: DatasetOptions = {}): Dataset {
  const { corpus = 'brown', tokenizer: kind = 'word', vocabWords = 8192, validationFraction = 0.1, seed = 0 } = options;
  const documents = corpus === 'brown' ? brownCorpus() : loadTextCorpus(corpus);
  const split = splitCorpus(documents, validationFraction, seed);
  let tokenizer: Tokenizer;
  if (options.tokenizerJSON) tokenizer = tokenizerFromJSON(options.tokenizerJSON);
  else if (kind === 'word') tokenizer = WordTokenizer.fromTexts(split.train.map((d) => d.text), vocabWords);
  else if (kind === 'byte') tokenizer = new ByteTokenizer();
  else throw rangeError('ERR_SWITCH_OPTION', `option 'tokenizer' must be 'word' or 'byte', got '${String(kind)}'`);
  const encode = (docs: TextDocument[]) => concat(docs.map((d) => tokenizer.encode(d.text + '\n')));
  return {
    tokenizer,
    train: encode(split.train),
    validation: encode(split.validation),
    trainDocuments: split.train.map((d) => d.name),
    validationDocuments: split.validation.map((d) => d.name),
  };
}

function concat(parts: Int32Array[]): Int32Array {
  const out = new Int32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
