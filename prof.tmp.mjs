import { SwitchFeedForward, setNumThreads } from 'switch-transformer';
setNumThreads(Number(process.env.NT ?? 2));
import * as S from './dist/src/layers/switch_steps.js';
import { native } from './dist/src/native.js';
const [T, D, F, E, cf] = process.argv.slice(2).map(Number);
const layer = new SwitchFeedForward({ dModel: D, dFF: F, numExperts: E, capacityFactor: cf });
const x = Float32Array.from({ length: T * D }, () => Math.random() - 0.5);
const dy = Float32Array.from({ length: T * D }, () => Math.random() - 0.5);
const t = {};
const tm = (n, f) => { const a = performance.now(); const r = f(); t[n] = (t[n] ?? 0) + performance.now() - a; return r; };
for (let it = 0; it < 6; it++) {
  if (it === 1) for (const k in t) t[k] = 0;
  const C = S.expertCapacity(T, cf, E, 4);
  const routing = tm('route', () => S.route(x, layer.params.router, { T, D, E, k: 1, G: T, C, policy: 'all', threshold: 0.2, noTokenLeftBehind: false, jitter: 0, seed: 0, streamBase: 16 }));
  const plan = tm('plan', () => S.planDispatch(routing));
  const cfg = { E, D, F, activation: 'relu', dropoutRate: 0, seed: 0, stream: 22 };
  const acts = tm('experts fwd', () => S.expertsForward(x, plan.rowToken, plan.rowChoice, plan.offsets, layer.params.wIn, layer.params.wOut, cfg));
  const y = tm('combine', () => S.combine(acts.expertOut, routing.gate, plan.row, T, 1, D));
  const cb = tm('combine bwd', () => S.combineBackward(dy, acts.expertOut, routing.gate, plan, T, 1, D, false));
  const rb = tm('router bwd', () => S.routerBackward(cb.dgate, routing, layer.params.router, D, 0.01, 0));
  tm('experts bwd', () => S.expertsBackward(rb.dx, cb.dExpertOut, acts, x, plan.rowToken, plan.offsets, layer.params.wIn, layer.params.wOut, cfg, true));
  tm('layer fwd', () => layer.forward(x, { training: true }));
  tm('layer bwd', () => layer.backward(dy));
  tm('alloc grads', () => { const a = new Float32Array(E * D * F); const b = new Float32Array(E * D * F); a.fill(0); b.fill(0); });
  tm('nan scan', () => { for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) throw 1; });
}
for (const k in t) console.log(k.padEnd(14), (t[k] / 5).toFixed(2), 'ms');
