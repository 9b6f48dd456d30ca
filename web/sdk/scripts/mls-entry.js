// What the SDK's end-to-end encryption (src/e2ee.js) uses of ts-mls and @noble/hashes, bundled
// into src/vendor/mls.js by `npm run vendor` so that browsers load it from the server with the
// rest of the SDK (no bare module names to resolve). test/vendor.test.js checks the bundle is
// what this file and the locked packages make.
export { sha256 } from '@noble/hashes/sha2.js';
export {
  createApplicationMessage,
  createCommit,
  createGroup,
  decodeGroupState,
  decodeMlsMessage,
  defaultCapabilities,
  defaultKeyPackageEqualityConfig,
  defaultLifetimeConfig,
  defaultPaddingConfig,
  emptyPskIndex,
  encodeGroupState,
  encodeMlsMessage,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  processMessage,
} from 'ts-mls';
export { decodeKeyPackage, encodeKeyPackage, makeKeyPackageRef, verifyKeyPackage } from 'ts-mls/keyPackage.js';
export { unprotectPrivateMessage } from 'ts-mls/messageProtection.js';
export { verifyLeafNodeSignatureKeyPackage } from 'ts-mls/leafNode.js';
