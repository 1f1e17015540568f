// Tokenizers: word level (the default; Brown is already tokenized, so words are the
// whitespace-separated items, lower-cased) with a vocabulary of the most frequent words of the
// training split plus an unknown token, and byte level (UTF-8 bytes, 256 ids).
import { rangeError } from '../errors.js';

export interface Tokenizer {
  readonly kind: 'word' | 'byte';
  readonly vocabSize: number;
  encode(text: string): Int32Array;
  decode(ids: ArrayLike<number>): string;
  /** Everything needed to rebuild it (saved with a checkpoint). */
  toJSON(): TokenizerJSON;
}

export type TokenizerJSON = { kind: 'word'; words: string[]; unknown: string } | { kind: 'byte' };

export const UNKNOWN_WORD = '<unk>';

export class WordTokenizer implements Tokenizer {
  readonly kind = 'word' as const;
  /** Id → word; id 0 is the unknown token. */
  readonly words: string[];
  private readonly ids: Map<string, number>;

  constructor(words: string[]) {
    this.words = [UNKNOWN_WORD, ...words.filter((w) => w !== UNKNOWN_WORD)];
    this.ids = new Map(this.words.map((w, i) => [w, i]));
  }

  /** The maxWords most frequent lower-cased words of `texts` (ties: alphabetical), plus the unknown token. */
  static fromTexts(texts: Iterable<string>, maxWords = 8192): WordTokenizer {
    if (!Number.isInteger(maxWords) || maxWords < 1)
      throw rangeError('ERR_SWITCH_OPTION', `option 'maxWords' must be an integer >= 1, got ${maxWords}`);
    const counts = new Map<string, number>();
    for (const text of texts) for (const w of splitWords(text)) counts.set(w, (counts.get(w) ?? 0) + 1);
    counts.delete(UNKNOWN_WORD);
    const ranked = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return new WordTokenizer(ranked.slice(0, maxWords).map(([w]) => w));
  }

  get vocabSize(): number {
    return this.words.length;
  }

  encode(text: string): Int32Array {
    const words = splitWords(text);
    const out = new Int32Array(words.length);
    for (let i = 0; i < words.length; i++) out[i] = this.ids.get(words[i]) ?? 0;
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    return Array.from(ids, (id) => this.words[id] ?? UNKNOWN_WORD).join(' ');
  }

  toJSON(): TokenizerJSON {
    return { kind: 'word', words: this.words.slice(1), unknown: UNKNOWN_WORD };
  }
}

export class ByteTokenizer implements Tokenizer {
  readonly kind = 'byte' as const;
  readonly vocabSize = 256;

  encode(text: string): Int32Array {
    return Int32Array.from(Buffer.from(text, 'utf8'));
  }

  decode(ids: ArrayLike<number>): string {
    return Buffer.from(Uint8Array.from(ids, (id) => id & 0xff)).toString('utf8');
  }

  toJSON(): TokenizerJSON {
    return { kind: 'byte' };
  }
}

export function splitWords(text: string): string[] {
  return text.toLowerCase().split(/\s+/).filter((w) => w.length > 0);
}

export function tokenizerFromJSON(json: TokenizerJSON): Tokenizer {
  if (json && json.kind === 'word' && Array.isArray(json.words)) return new WordTokenizer(json.words);
  if (json && json.kind === 'byte') return new ByteTokenizer();
  throw rangeError('ERR_CHECKPOINT', `unknown tokenizer description ${JSON.stringify(json)?.slice(0, 80)}`);
}
