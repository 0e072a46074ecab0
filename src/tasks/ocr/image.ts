/** Plain RGBA images and the resampling OCR needs; context-free so it runs in Node tests too. */

/** Longest side kept when decoding, in tabs and in Node: detection scales to 960 anyway, crops read this copy. */
export const MAX_SIDE = 4096

export interface RgbaImage {
  width: number
  height: number
  /** RGBA, 4 bytes per pixel, row-major (the layout of ImageData). */
  data: Uint8Array | Uint8ClampedArray
}

/** An axis-aligned box in pixel coordinates of the original image. */
export interface Box {
  x: number
  y: number
  w: number
  h: number
}

/**
 * Samples region `box` of `img` into `outW`×`outH` CHW planes with bilinear interpolation
 * (half-pixel centres, like cv2.resize INTER_LINEAR), writing `norm(channelValue, c)` in BGR
 * order as PaddleOCR does. `rotate` turns the region 90° counter-clockwise (vertical text lines).
 */
export function sampleChw(
  img: RgbaImage,
  box: Box,
  outW: number,
  outH: number,
  out: Float32Array,
  offset: number,
  stride: number,
  norm: (v: number, c: number) => number,
  rotate = false,
): void {
  const { width, height, data } = img
  const plane = stride * outH
  const [srcW, srcH] = rotate ? [box.h, box.w] : [box.w, box.h]
  const sx = srcW / outW
  const sy = srcH / outH
  for (let oy = 0; oy < outH; oy++) {
    const fy = Math.max(0, (oy + 0.5) * sy - 0.5)
    for (let ox = 0; ox < outW; ox++) {
      const fx = Math.max(0, (ox + 0.5) * sx - 0.5)
      // (u, v) in the region; rotated: output column u reads region row, output row reads column from the right.
      const u = rotate ? box.w - 1 - fy : fx
      const v = rotate ? fx : fy
      const x = Math.min(width - 1, box.x + u)
      const y = Math.min(height - 1, box.y + v)
      const x0 = Math.max(0, Math.floor(x))
      const y0 = Math.max(0, Math.floor(y))
      const x1 = Math.min(width - 1, x0 + 1)
      const y1 = Math.min(height - 1, y0 + 1)
      const ax = Math.max(0, x - x0)
      const ay = Math.max(0, y - y0)
      const i00 = (y0 * width + x0) * 4
      const i01 = (y0 * width + x1) * 4
      const i10 = (y1 * width + x0) * 4
      const i11 = (y1 * width + x1) * 4
      const o = offset + oy * stride + ox
      for (let c = 0; c < 3; c++) {
        const ch = 2 - c // BGR
        const top = data[i00 + ch]! * (1 - ax) + data[i01 + ch]! * ax
        const bottom = data[i10 + ch]! * (1 - ax) + data[i11 + ch]! * ax
        out[o + c * plane] = norm(top * (1 - ay) + bottom * ay, c)
      }
    }
  }
}
