/** The FLOP counts behind the bench's floor of correlation's share, against counts made element by element. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { forwardFlopsPerToken, gramFlopsPerRow, shareFloor } from '../../bench/estimators.ts';

test('Gram FLOPs per row count 2 per (i, j) in a block on or above the diagonal', () => {
  for (const [width, block] of [[1300, 512], [4096, 512], [7, 3], [512, 512]]) {
    let pairs = 0;
    for (let i = 0; i < width; i++) for (let j = 0; j < width; j++) if (Math.floor(i / block) <= Math.floor(j / block)) pairs++;
    assert.is(gramFlopsPerRow(width, block), 2 * pairs, `width ${width}, block ${block}`);
  }
});

test('forward FLOPs per token: 2 per weight of every linear layer and the lm_head', () => {
  const cfg = { hidden_size: 64, intermediate_size: 256, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, vocab_size: 100 };
  const weights = 3 * (64 * 64 + 64 * 32 + 64 * 32 + 64 * 64 + 3 * 64 * 256) + 64 * 100;
  assert.is(forwardFlopsPerToken(cfg), 2 * weights);
});

test('the floor is gram seconds ÷ (forward + gram seconds) at the measured rates', () => {
  const cfg = { hidden_size: 64, intermediate_size: 512, num_hidden_layers: 2, num_attention_heads: 4, head_dim: 16, vocab_size: 10 };
  const gramFlops = 3 * 1000 * gramFlopsPerRow(512, 512);
  const f = shareFloor({ measuredShare: 0.4, cfg, keys: 3, tokens: 1000, paddingEfficiency: 0.5, forwardSeconds: gramFlops / 2e9, gramGflops: 2, block: 512 });
  assert.ok(Math.abs(f.share - 0.5) < 1e-12, `${f.share}`);
  assert.ok(Math.abs(f.aboveFloor - 0.8) < 1e-12);
  assert.is(f.paddedTokens, 2000);
  assert.is(f.forwardFlops, 2000 * forwardFlopsPerToken(cfg));
});

test.run();
