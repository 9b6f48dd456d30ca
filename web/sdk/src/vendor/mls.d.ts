// The types of mls.js, the bundle scripts/mls-entry.js makes: the packages' own.
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
