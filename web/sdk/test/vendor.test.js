// The bundle of ts-mls the SDK loads (src/vendor/mls.js) is exactly what `npm run vendor` makes
// from scripts/mls-entry.js and the locked packages: nobody edited it by hand, and it was made
// again when the packages changed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

test('the vendored MLS bundle is what the vendor script makes', () => {
  const script = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts.vendor;
  const out = join(mkdtempSync(join(tmpdir(), 'tidings-vendor-')), 'mls.js');
  const args = script
    .split(' ')
    .slice(1)
    .map((a) => (a.startsWith('--outfile=') ? `--outfile=${out}` : a));
  execFileSync(join(root, 'node_modules', '.bin', 'esbuild'), [...args, '--log-level=warning'], {
    cwd: root,
  });
  assert.ok(
    readFileSync(out).equals(readFileSync(join(root, 'src', 'vendor', 'mls.js'))),
    'src/vendor/mls.js differs: run `npm run vendor` in web/sdk',
  );
});

test('the bundle has no import a browser cannot resolve on the paths ciphersuite 1 takes', async () => {
  const mls = await import('../src/vendor/mls.js');
  const suite = await mls.getCiphersuiteImpl(
    mls.getCiphersuiteFromName('MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519'),
  );
  const { publicKey, signKey } = await suite.signature.keygen();
  const message = new TextEncoder().encode('signed');
  const signature = await suite.signature.sign(signKey, message);
  assert.equal(await suite.signature.verify(publicKey, message, signature), true);
});
