// Generates the known-answer vector for the Sphere wallet's legacy DIRECT:// identity address.
// npm packages only. Setup (node >= 20):
//   npm i @scure/bip32@2.4.0 @scure/bip39@2.4.0 @noble/hashes@2.4.0 @noble/curves@2.4.0 \
//     stsdk-v1@npm:@unicitylabs/state-transition-sdk@1.6.1-rc.f37cb85 \
//     @unicitylabs/state-transition-sdk@3.0.1
// Run: node direct-address-gen.mjs > direct-address-vectors.json
import { HDKey } from '@scure/bip32';
import { mnemonicToSeedSync } from '@scure/bip39';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex as hex, hexToBytes } from '@noble/hashes/utils.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
// Reference implementation Sphere used before vendoring the recipe (SDK 1.6.1-rc.f37cb85):
import { SigningService } from 'stsdk-v1/lib/sign/SigningService.js';
import { TokenType } from 'stsdk-v1/lib/token/TokenType.js';
import { HashAlgorithm } from 'stsdk-v1/lib/hash/HashAlgorithm.js';
import { UnmaskedPredicateReference } from 'stsdk-v1/lib/predicate/embedded/UnmaskedPredicateReference.js';
// CBOR encoder of the SDK line current Sphere builds against (it vendors the recipe on top of it):
import { CborSerializer as Cbor3 } from '@unicitylabs/state-transition-sdk/lib/serialization/cbor/CborSerializer.js';

const TOKEN_TYPE = hexToBytes('f8aa13834268d29355ff12183066f0cb902003629bbc5eb9ef0efbe397867509');
const cat = (...a) => Uint8Array.from(a.flatMap((x) => [...x]));
const assertEq = (a, b, what) => { if (a !== b) throw new Error(`${what} mismatch: ${a} != ${b}`); };

// Minimal definite-length CBOR heads (all lengths here are < 256).
const head = (major, n) => (n < 24 ? [major | n] : [major | 24, n]);
const bstr = (b) => cat(head(0x40, b.length), b);
const tstr = (s) => { const b = new TextEncoder().encode(s); return cat(head(0x60, b.length), b); };
const arr = (...items) => cat(head(0x80, items.length), ...items);
const uint0 = Uint8Array.of(0x00);

// The address recipe proper: 33-byte compressed public key -> DIRECT:// string.
function directFromPubkey(tokenPublicKey) {
  const cbor = arr(
    bstr(Uint8Array.of(0x00)), // EmbeddedPredicateType.UNMASKED = 0, as a 1-byte byte string
    bstr(bstr(TOKEN_TYPE)), // TokenType.toCBOR() (a bstr) wrapped again in a bstr
    tstr('secp256k1'), // SigningService.algorithm
    uint0, // HashAlgorithm.SHA256 = 0
    bstr(tokenPublicKey), // 33-byte compressed public key
  );
  const referenceDigest = sha256(cbor);
  const imprint = cat([0x00, 0x00], referenceDigest); // DataHash imprint: u16be algorithm id (SHA256=0) + digest
  const checksum = sha256(imprint).slice(0, 4);
  const directAddress = `DIRECT://${hex(imprint)}${hex(checksum)}`;
  const body = directAddress.slice('DIRECT://'.length);
  const addressId = `DIRECT_${body.slice(0, 6).toLowerCase()}_${body.slice(-6).toLowerCase()}`;
  return { cbor, referenceDigest, imprint, checksum, directAddress, addressId };
}

async function vector(name, walletPrivateKey, extra = {}) {
  // Sphere passes the wallet key through SigningService.createFromSecret, which SHA-256s it first.
  const tokenPrivateKey = sha256(walletPrivateKey);
  const tokenPublicKey = secp256k1.getPublicKey(tokenPrivateKey, true);
  const { cbor, referenceDigest, imprint, checksum, directAddress, addressId } = directFromPubkey(tokenPublicKey);
  const walletPublicKey = secp256k1.getPublicKey(walletPrivateKey, true);

  // Cross-check 1: the v1 SDK path Sphere used (createFromSecret -> UnmaskedPredicateReference -> DirectAddress).
  const ss = await SigningService.createFromSecret(walletPrivateKey);
  const ref = await UnmaskedPredicateReference.create(new TokenType(TOKEN_TYPE), ss.algorithm, ss.publicKey, HashAlgorithm.SHA256);
  assertEq((await ref.toAddress()).toString(), directAddress, 'v1 SDK address');
  // Cross-check 2: the same CBOR built with SDK 3.0.1's serializer (what current Sphere's vendored helper does).
  const cbor3 = Cbor3.encodeArray(Cbor3.encodeByteString(Uint8Array.of(0)), Cbor3.encodeByteString(Cbor3.encodeByteString(TOKEN_TYPE)),
    Cbor3.encodeTextString('secp256k1'), Cbor3.encodeUnsignedInteger(0n), Cbor3.encodeByteString(tokenPublicKey));
  assertEq(hex(cbor3), hex(cbor), 'SDK 3.0.1 CBOR');

  return {
    name, ...extra,
    walletPrivateKey: hex(walletPrivateKey),
    walletPublicKey: hex(walletPublicKey), // chainPubkey; NOT used for the address
    tokenPrivateKey: hex(tokenPrivateKey), // = SHA-256(walletPrivateKey)
    tokenPublicKey: hex(tokenPublicKey),
    tokenType: hex(TOKEN_TYPE),
    predicateReferenceCbor: hex(cbor),
    predicateReferenceSha256: hex(referenceDigest),
    imprint: hex(imprint), // = checksum input
    checksum: hex(checksum),
    directAddress,
    addressId,
    // WRONG for Sphere main / v1 wallets; what you get if the raw wallet key is used (no SHA-256 pre-hash):
    rawKeyVariantDirectAddress: directFromPubkey(walletPublicKey).directAddress,
  };
}

const mnemonic = 'abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about';
const path = "m/44'/0'/0'/0/0";
const hd = HDKey.fromMasterSeed(mnemonicToSeedSync(mnemonic, '')).derive(path);
const out = [
  await vector('bip39-abandon-about', hd.privateKey, { mnemonic, passphrase: '', path }),
  await vector('privkey-01x32', new Uint8Array(32).fill(1)),
  // Golden vectors from sphere-sdk tests/unit/core/Sphere.l3-identity-address.golden.test.ts (recorded from v1.6.1):
  await vector('sphere-golden-1', hexToBytes('00'.repeat(31) + '01'), { expected: 'DIRECT://0000b97b4a83dc3fe636d4f21dbfe4c93149e07367539a059a9c8e64ad7d9fdc30644eaaf64b' }),
  await vector('sphere-golden-11', hexToBytes('11'.repeat(32)), { expected: 'DIRECT://0000ed33f0366e3220d75411f4aedc51d0330536ab08e01d3b681e096b195dcdbe2f61718711' }),
];
// Pubkey-level golden from sphere-sdk tests/unit/token-engine/identity.test.ts (pubkey = generator G):
assertEq(directFromPubkey(hexToBytes('0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798')).directAddress,
  'DIRECT://00001386dc2547e656f7041444e3ef3772f374305551724ef9fe86cf004a118d917dd4192a29', 'pubkey golden');
for (const v of out) if (v.expected) assertEq(v.directAddress, v.expected, `${v.name} golden`);
console.log(JSON.stringify({
  description: 'Sphere wallet legacy DIRECT:// identity address (UnmaskedPredicateReference -> DirectAddress), with intermediates',
  generator: 'research/direct-address-gen.mjs',
  referenceSdk: '@unicitylabs/state-transition-sdk@1.6.1-rc.f37cb85 (cross-checked CBOR with 3.0.1)',
  vectors: out,
}, null, 2));
