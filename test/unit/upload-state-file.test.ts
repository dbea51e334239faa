// The upload state file of `snapgraph restore-file` (src/cli/upload-state-file.ts): what a command killed while it
// wrote the file left beside it goes with the next change.
import { strict as assert } from 'node:assert';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PreviousUpload } from 'tus-js-client';
import { UploadStateFile } from '../../src/cli/upload-state-file';

const upload = (id: number): PreviousUpload => ({
  size: id * 10,
  metadata: {},
  creationTime: new Date(0).toISOString(),
  urlStorageKey: '',
  uploadUrl: `http://server/uploads/${id}`,
  parallelUploadUrls: null,
});

describe('UploadStateFile', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapgraph-upload-state-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("removes the temporary files of a write that was killed (kill -9) at its next change, and no one else's", async () => {
    const state = new UploadStateFile(join(dir, 'uploads.json'));
    await state.addUpload('first', upload(1));
    // Killed between writing its temporary file and renaming it over the state file.
    writeFileSync(join(dir, 'uploads.json.tmp-0a1b2c3d4e5f'), '{"half": ');
    writeFileSync(join(dir, 'uploads.json.tmp-ffeeddccbbaa'), '');
    writeFileSync(join(dir, 'exports.json.tmp-0a1b2c3d4e5f'), 'not the state file');

    await state.addUpload('second', upload(2));
    assert.deepEqual(readdirSync(dir).sort(), ['exports.json.tmp-0a1b2c3d4e5f', 'uploads.json']);
    assert.deepEqual((await state.findAllUploads()).map((upload) => upload.uploadUrl).sort(), ['http://server/uploads/1', 'http://server/uploads/2']);
  });
});
