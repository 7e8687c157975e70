//! Every limit UXF enforces, as documented constants (spec §8.6). The values are the
//! reference's, so a bundle one implementation accepts the other accepts too.

/// Largest CAR accepted by [`crate::uxf::UxfPackage::from_car`], in bytes (checked before parsing).
pub const CAR_IMPORT_MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;
/// Most blocks in an imported CAR, envelope and manifest included.
pub const CAR_IMPORT_MAX_BLOCK_COUNT: usize = 10_000;
/// Largest block body in an imported CAR, in bytes.
pub const CAR_IMPORT_MAX_BLOCK_BYTES: usize = 64 * 1024;
/// Largest `{content, children}` of an element as `verify` measures it (dag-cbor of the
/// in-memory form, byte fields as hex text), in bytes.
pub const VERIFY_MAX_ELEMENT_BYTES: usize = 64 * 1024;
/// Most manifest entries in a JSON or CAR package.
pub const MANIFEST_MAX_SIZE: usize = 100_000;
/// Most elements in a JSON package.
pub const ELEMENTS_MAX_SIZE: usize = 100_000;
/// Longest envelope `creator`, in UTF-16 code units.
pub const MAX_CREATOR_LENGTH: usize = 256;
/// Longest envelope `description`, in UTF-16 code units.
pub const MAX_DESCRIPTION_LENGTH: usize = 1024;
/// Most elements `verify` accepts in a pool.
pub const VERIFY_MAX_POOL_SIZE: usize = 1_000_000;
/// Deepest path `verify` walks before reporting `CYCLE_DETECTED`.
pub const VERIFY_MAX_DEPTH: usize = 4096;
/// Longest `header.kind`, in UTF-16 code units.
pub const MAX_KIND_LENGTH: usize = 64;
/// Nametag nesting budget of deconstruct and assemble: at most this many token roots in
/// one nesting chain.
pub const MAX_NAMETAG_DEPTH: u32 = 100;
/// Largest state index `assemble_at_state` accepts (2³² − 1).
pub const MAX_STATE_INDEX: u64 = 4_294_967_295;
/// Largest `header.representation` / `header.semantics` (2⁵³ − 1, a JS safe integer).
pub const MAX_HEADER_NUMBER: u64 = (1 << 53) - 1;
/// Deepest nesting of CBOR arrays/maps the decoder accepts (bounds its recursion; the
/// reference's data is at most ~10 deep, a split `reason` included).
pub const MAX_CBOR_DEPTH: usize = 64;
/// Longest SMT step path string accepted (bounds the quadratic base conversion; a
/// 64 KiB block holds at most ~158 000 decimal digits anyway).
pub const MAX_PATH_CHARS: usize = 160_000;
/// Most members all instance chains rebuilt by CAR import may hold together (every
/// head's entry repeats the history it shares with other heads, as in the reference).
/// Without sharing, a 10 000-block CAR holds at most 10 000 members.
pub const MAX_CHAIN_MEMBERS: usize = 100_000;
/// Most elements one assembled token may hold, nametags counted every time they are
/// inlined (a nametag linked twice counts twice). A DAG of nametag roots each linking
/// the one below twice stands for a token exponential in its size; this and
/// [`MAX_ASSEMBLE_BYTES`] bound the output of `assemble` (and of `uxf unpack`). A token
/// emits a handful of elements per transaction (the golden tokens consist of 8 to 29),
/// so real tokens stay orders of magnitude below.
pub const MAX_ASSEMBLE_ELEMENTS: usize = 100_000;
/// Most canonical element bytes one assembled token may hold, counted like
/// [`MAX_ASSEMBLE_ELEMENTS`] (large elements such as certificates and SMT paths would
/// otherwise let few elements make a huge token). The token's JSON grows with it: byte
/// fields are hex, SMT paths decimal.
pub const MAX_ASSEMBLE_BYTES: usize = 16 * 1024 * 1024;
/// Deepest JSON [`crate::uxf::parse_token_json`] reads, in nested arrays and objects
/// (the outermost counts as 1): the deepest token `assemble` can produce — 5 levels for
/// each of [`MAX_NAMETAG_DEPTH`] roots (a root's object, then `transactions`, a
/// transaction, its `data` and `nametags` down to the next root carried in transfer
/// data; for the innermost, `transactions`, a transaction, `inclusionProof` and
/// `authenticator`), then [`MAX_CBOR_DEPTH`] levels of content — plus 1 for a file
/// holding an array of tokens. serde_json's own default (128) would refuse tokens that
/// `uxf unpack` writes.
pub const MAX_TOKEN_JSON_DEPTH: usize = 5 * (MAX_NAMETAG_DEPTH as usize) + MAX_CBOR_DEPTH + 1;
