// The camera: getUserMedia with a front/back switch (the back camera first, which phones call
// "environment"), and a frame loop that only ever works on the newest frame: the next frame
// is grabbed when the previous one has been processed, so slow inference drops frames
// instead of queueing them. requestVideoFrameCallback drives the loop where the browser has
// it (a callback per new video frame), requestAnimationFrame elsewhere.

export class CameraError extends Error {}

// Why getUserMedia failed, in words a person can act on.
function explain(err) {
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Camera access was denied. Allow the camera for this page in the browser settings, or add images from files below.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No camera was found. You can still add images from files below.';
    case 'NotReadableError':
      return 'The camera is in use by another app. Close it and reload, or add images from files below.';
    default:
      return `The camera could not start (${err && err.message ? err.message : err}). You can still add images from files below.`;
  }
}

export class Camera {
  constructor(video) {
    this.video = video;
    this.facing = 'environment';
    this.stream = null;
    this.running = false;
    this.cameras = 0;
  }

  async start(facing = this.facing) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new CameraError('This page has no camera access here: camera access needs HTTPS (or localhost). You can still add images from files below.');
    }
    this.stop();
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: false,
        video: { facingMode: { ideal: facing }, width: { ideal: 640 }, height: { ideal: 480 } },
      });
    } catch (err) {
      throw new CameraError(explain(err));
    }
    this.facing = facing;
    this.video.srcObject = this.stream;
    // A muted inline video may autoplay everywhere; a refusal (other than an AbortError, a
    // newer srcObject taking over) means no frames would ever come, so it is the camera's error.
    await this.video.play().catch((err) => {
      if (err && err.name === 'AbortError') return;
      throw new CameraError(`The camera started but its picture could not be shown (${err && err.message ? err.message : err}).`);
    });
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      this.cameras = devices.filter((d) => d.kind === 'videoinput').length;
    } catch {
      this.cameras = 1;
    }
  }

  // Restarts with the other camera and resumes the frame loop.
  async switchFacing() {
    await this.start(this.facing === 'environment' ? 'user' : 'environment');
    if (this.onFrame) this.loop(this.onFrame);
  }

  stop() {
    this.running = false;
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.stream = null;
  }

  // Calls `onFrame(video)` (async) for the newest frame, one at a time, until stop().
  loop(onFrame) {
    this.onFrame = onFrame;
    this.running = true;
    // A restarted loop ends the previous one (its pending callback sees a newer generation).
    const gen = (this.generation = (this.generation || 0) + 1);
    const v = this.video;
    const next = () => {
      if (!this.running || gen !== this.generation) return;
      if ('requestVideoFrameCallback' in v) v.requestVideoFrameCallback(tick);
      else requestAnimationFrame(tick);
    };
    const tick = async () => {
      if (!this.running || gen !== this.generation) return;
      if (v.readyState >= 2 && v.videoWidth > 0) {
        try {
          await onFrame(v);
        } catch (err) {
          // The view that ran the frame has shown the error; this keeps it in the console too.
          console.warn('frame not classified:', err);
        }
      }
      next();
    };
    next();
  }
}

// The centre square of `source` (video, image or bitmap) drawn at `size` x `size`: the
// region the model looks at (it crops the centre), and the sample image that is stored.
export function centreSquare(source, size, canvas = new OffscreenCanvas(size, size)) {
  const w = source.videoWidth || source.naturalWidth || source.width;
  const h = source.videoHeight || source.naturalHeight || source.height;
  const side = Math.min(w, h);
  canvas.width = size;
  canvas.height = size;
  const g = canvas.getContext('2d', { willReadFrequently: true });
  g.drawImage(source, (w - side) / 2, (h - side) / 2, side, side, 0, 0, size, size);
  return { canvas, rgba: new Uint8Array(g.getImageData(0, 0, size, size).data.buffer), width: size, height: size };
}
