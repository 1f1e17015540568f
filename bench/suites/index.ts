// The suites of `switch-bench`, in the order a full run takes them (peak first: the others report
// percentages of it). Each capability adds its suite module here.
import type { Suite } from '../suite.js';
import { peakSuite } from './peak.js';
import { bf16Suite } from './bf16.js';
import { gemmSuite } from './gemm.js';
import { layerSuite } from './layer.js';
import { expertsSuite } from './experts.js';
import { collectivesSuite } from './collectives.js';
import { expertParallelSuite } from './expert-parallel.js';
import { trainSuite } from './train.js';
import { generateSuite } from './generate.js';

export const suites: Suite[] = [
  peakSuite,
  bf16Suite,
  gemmSuite,
  layerSuite,
  expertsSuite,
  collectivesSuite,
  expertParallelSuite,
  trainSuite,
  generateSuite,
];
