// The official state-transition SDK (3.0.1) as a real peer of our embedded
// aggregator. Prints one JSON line; exits non-zero on any failure.
//
//   node pointer-sdk-interop.mjs submit URL TRUST_BASE_FILE
//     submits a certification request with the SDK's AggregatorClient, waits for
//     its inclusion proof, and verifies it with InclusionProofVerificationRule.
//   node pointer-sdk-interop.mjs verify URL TRUST_BASE_FILE PUBKEY SSH TXH
//     fetches and verifies, with the SDK, the proof of a request someone else
//     (our Rust client) submitted: lock script = signature predicate over PUBKEY.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

const sdk = '@unicitylabs/state-transition-sdk/lib';
const { AggregatorClient } = await import(`${sdk}/api/AggregatorClient.js`);
const { CertificationData } = await import(`${sdk}/api/CertificationData.js`);
const { StateId } = await import(`${sdk}/api/StateId.js`);
const { RootTrustBase } = await import(`${sdk}/api/bft/RootTrustBase.js`);
const { UnicityCertificateVerifier } = await import(`${sdk}/api/bft/verification/UnicityCertificateVerifier.js`);
const { UnicitySealQuorumSignaturesVerificationRule } = await import(
  `${sdk}/api/bft/verification/rule/UnicitySealQuorumSignaturesVerificationRule.js`
);
const { Secp256k1SignatureVerifier } = await import(`${sdk}/crypto/secp256k1/Secp256k1SignatureVerifier.js`);
const { SigningService } = await import(`${sdk}/crypto/secp256k1/SigningService.js`);
const { DataHash } = await import(`${sdk}/crypto/hash/DataHash.js`);
const { DataHasher } = await import(`${sdk}/crypto/hash/DataHasher.js`);
const { HashAlgorithm } = await import(`${sdk}/crypto/hash/HashAlgorithm.js`);
const { CborSerializer } = await import(`${sdk}/serialization/cbor/CborSerializer.js`);
const { EncodedPredicate } = await import(`${sdk}/predicate/EncodedPredicate.js`);
const { SignaturePredicate } = await import(`${sdk}/predicate/builtin/SignaturePredicate.js`);
const { PredicateVerifierService } = await import(`${sdk}/predicate/verification/PredicateVerifierService.js`);
const { InclusionProofVerificationRule } = await import(
  `${sdk}/transaction/verification/rule/InclusionProofVerificationRule.js`
);
const { HexConverter } = await import(`${sdk}/util/HexConverter.js`);

const [mode, url, trustBaseFile, ...rest] = process.argv.slice(2);
const trustBase = RootTrustBase.fromJSON(JSON.parse(readFileSync(trustBaseFile, 'utf8')));
const client = new AggregatorClient(url);
const ucVerifier = new UnicityCertificateVerifier(
  new UnicitySealQuorumSignaturesVerificationRule(new Secp256k1SignatureVerifier()),
);

async function waitForProof(stateId) {
  const deadline = Date.now() + 30_000;
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    const response = await client.getInclusionProof(stateId);
    if (response.inclusionProof) return response.inclusionProof;
    if (Date.now() > deadline) throw new Error('no inclusion proof within 30 s');
    await new Promise((r) => setTimeout(r, delay));
  }
}

async function verify(proof, lockScript, ssh, txh) {
  const result = await InclusionProofVerificationRule.verify(
    trustBase,
    PredicateVerifierService.create(),
    ucVerifier,
    proof,
    txh,
    null,
    lockScript,
    ssh,
  );
  return result.status;
}

if (mode === 'submit') {
  const signer = new SigningService(randomBytes(32));
  const lockScript = EncodedPredicate.fromPredicate(SignaturePredicate.fromSigningService(signer));
  const ssh = new DataHash(HashAlgorithm.SHA256, randomBytes(32));
  const txh = new DataHash(HashAlgorithm.SHA256, randomBytes(32));
  const digest = await new DataHasher(HashAlgorithm.SHA256)
    .update(CborSerializer.encodeArray(CborSerializer.encodeByteString(ssh.data), CborSerializer.encodeByteString(txh.data)))
    .digest();
  const signature = await signer.sign(digest);
  const data = new CertificationData(lockScript, ssh, txh, null, signature.encode());
  const submitted = await client.submitCertificationRequest(data);
  const stateId = await StateId.fromCertificationData(data);
  const proof = await waitForProof(stateId);
  const status = await verify(proof, lockScript, ssh, txh);
  // A wrong transaction hash must not verify.
  const wrong = new DataHash(HashAlgorithm.SHA256, randomBytes(32));
  const tampered = await verify(proof, lockScript, ssh, wrong);
  console.log(
    JSON.stringify({
      submit: submitted.status,
      status,
      tampered,
      stateId: HexConverter.encode(stateId.data),
      publicKey: HexConverter.encode(signer.publicKey),
      sourceStateHash: HexConverter.encode(ssh.data),
      transactionHash: HexConverter.encode(txh.data),
    }),
  );
} else if (mode === 'verify') {
  const [pubkey, sshHex, txhHex] = rest;
  const lockScript = EncodedPredicate.fromPredicate(SignaturePredicate.create(HexConverter.decode(pubkey)));
  const ssh = new DataHash(HashAlgorithm.SHA256, HexConverter.decode(sshHex));
  const txh = new DataHash(HashAlgorithm.SHA256, HexConverter.decode(txhHex));
  const stateId = await StateId.create(lockScript, ssh);
  const proof = await waitForProof(stateId);
  console.log(JSON.stringify({ status: await verify(proof, lockScript, ssh, txh), stateId: HexConverter.encode(stateId.data) }));
} else {
  console.error('usage: pointer-sdk-interop.mjs submit|verify URL TRUST_BASE_FILE [PUBKEY SSH TXH]');
  process.exit(2);
}
