// Where browser tests leave evidence (screenshots, recordings): tests/artifacts/, gitignored.

import fs from 'node:fs/promises';
import path from 'node:path';

import { wavBytes } from './audio.js';
import { REPO } from './server.js';

export const ARTIFACTS = path.join(REPO, 'tests/artifacts');

export async function artifactPath(name) {
  await fs.mkdir(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}

export async function saveRecording(name, recording) {
  await fs.writeFile(await artifactPath(name), wavBytes(recording.channels, recording.rate));
}
