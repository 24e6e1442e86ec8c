/**
 * Weights read into the rewrite's reused buffer (weight-source.ts): a float32 model with external
 * data, whose weights differ in size and layout (a large one, then smaller ones, one behind a
 * Transpose), quantizes to exactly the tensors of the same model stored inline, for every variant.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { GraphBuilder, tensor } from '../../../onnx/builder.ts';
import { readOnnxModel, readTensorBytes } from '../../../onnx/model-reader.ts';
import { quantizeModel, QUANT_VARIANTS } from '../../../onnx/quantize/index.ts';
import { gaussian, tmpDir } from './fixtures.ts';

function graph(): GraphBuilder {
  const g = new GraphBuilder('three_linears');
  g.input('X', 'float', ['m', 64]);
  g.initializer('A', tensor('float', [64, 192], gaussian(64 * 192, 1, 0.1)));
  g.initializer('B', tensor('float', [192, 64], gaussian(192 * 64, 2, 0.1)));
  // C is stored as W [out, in] behind a Transpose: the 'NK' layout.
  g.initializer('C', tensor('float', [32, 64], gaussian(32 * 64, 3, 0.1)));
  g.node('MatMul', ['X', 'A'], ['a'], {}, { name: '/model/layers.0/mlp/up_proj/MatMul' });
  g.node('MatMul', ['a', 'B'], ['b'], {}, { name: '/model/layers.0/mlp/down_proj/MatMul' });
  g.node('Transpose', ['C'], ['Ct'], { perm: [1, 0] });
  g.node('MatMul', ['b', 'Ct'], ['Y'], {}, { name: '/model/layers.0/self_attn/q_proj/MatMul' });
  g.output('Y', 'float', ['m', 32]);
  return g;
}

/** Every initializer's bytes, by name. */
function tensors(file: string): Map<string, string> {
  const m = readOnnxModel(file);
  try {
    return new Map([...m.initializers.values()].map((t) => [t.name, Buffer.from(readTensorBytes(m, t)).toString('base64')]));
  } finally {
    m.source.close();
  }
}

test('external float32 weights (read into one reused buffer) quantize to the same tensors as inline ones, every variant', async () => {
  const dir = tmpDir();
  const inline = path.join(dir, 'inline.onnx');
  writeFileSync(inline, graph().toModel({ opset: 17 }));
  const ext = path.join(dir, 'ext.onnx');
  await graph().writeWithExternalData(ext, `${ext}.data`, { opset: 17 });
  const src = readOnnxModel(ext);
  assert.ok([...src.initializers.values()].every((t) => t.location.kind === 'external'), 'fixture weights are external');
  src.source.close();
  for (const v of QUANT_VARIANTS) {
    const a = path.join(dir, `inline_${v}.onnx`);
    const b = path.join(dir, `ext_${v}.onnx`);
    const ra = await quantizeModel(inline, v, a, { includeLmHead: true });
    const rb = await quantizeModel(ext, v, b, { includeLmHead: true });
    assert.is(ra.quantized.length, 3, v);
    assert.equal(rb.quantized, ra.quantized, v);
    const [ta, tb] = [tensors(a), tensors(b)];
    assert.equal([...tb.keys()].sort(), [...ta.keys()].sort(), `${v}: same initializers`);
    for (const [name, bytes] of ta) assert.is(tb.get(name), bytes, `${v}: ${name}`);
  }
});

test.run();
