// The plain-JS single-pose decode a page does today on the original model's heads, as tfjs
// posenet's decodeSinglePose does (argmaxes, offsets, sigmoid): what the rewritten model saves.
// Heads are the model's own outputs, NCHW [1, C, H, W] or NHWC [1, H, W, C].
export function decodeSinglePose(heatmaps, offsets, dims, layout, stride, sigmoid) {
  const nhwc = layout === "NHWC";
  const [h, w, c] = nhwc ? [dims[1], dims[2], dims[3]] : [dims[2], dims[3], dims[1]];
  const at = (data, channels, k, y, x) => (nhwc ? data[(y * w + x) * channels + k] : data[(k * h + y) * w + x]);
  const keypoints = [];
  for (let k = 0; k < c; k++) {
    let best = -Infinity, by = 0, bx = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = at(heatmaps, c, k, y, x);
        if (v > best) [best, by, bx] = [v, y, x];
      }
    }
    const py = by * stride + at(offsets, 2 * c, k, by, bx);
    const px = bx * stride + at(offsets, 2 * c, k + c, by, bx);
    keypoints.push([px, py, sigmoid ? 1 / (1 + Math.exp(-best)) : best]);
  }
  return keypoints;
}
