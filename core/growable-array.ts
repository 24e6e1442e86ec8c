/**
 * A typed array that grows by doubling, for appending values whose count is not known ahead:
 * one value per example (agreement's per-example KL, the checkpoint's example ids and lengths, calibration's columns)
 * or the bytes of a protobuf message being encoded (onnx/wire.ts). Growing copies the filled part
 * into an array twice as large, so n appends cost O(n) copies in all.
 */
type TypedArray = Float64Array | Float32Array | Int32Array | Uint8Array;

export class GrowableArray<T extends TypedArray> {
  private buf: T;
  private n = 0;
  constructor(private readonly C: new (length: number) => T, initialCapacity = 1024) {
    this.buf = new C(Math.max(1, initialCapacity));
  }
  get length(): number {
    return this.n;
  }
  push(v: number): void {
    if (this.n === this.buf.length) this.grow(this.n + 1);
    this.buf[this.n++] = v;
  }
  pushAll(a: ArrayLike<number>): void {
    if (this.n + a.length > this.buf.length) this.grow(this.n + a.length);
    this.buf.set(a, this.n);
    this.n += a.length;
  }
  /** A view of the filled part (shares memory; copy before the next push if you keep it). */
  view(): T {
    return this.buf.subarray(0, this.n) as T;
  }
  private grow(min: number): void {
    let cap = this.buf.length * 2;
    while (cap < min) cap *= 2;
    const next = new this.C(cap);
    next.set(this.buf.subarray(0, this.n));
    this.buf = next;
  }
}

export class GrowableF64 extends GrowableArray<Float64Array> {
  constructor(initialCapacity = 1024) {
    super(Float64Array, initialCapacity);
  }
}
