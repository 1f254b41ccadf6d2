//! HMAC signatures over the four JSON frames of a message.
//!
//! The keyed HMAC state is computed once and cloned per message, because the controller signs
//! and verifies on every relayed message and re-deriving the key schedule each time would
//! dominate the cost for small messages.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies messages for one shared key. An empty key disables signing, as in
/// jupyter_client (signature frame empty, nothing checked).
#[derive(Clone)]
pub struct Signer {
    keyed: Option<HmacSha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("enabled", &self.keyed.is_some())
            .finish()
    }
}

/// The result of checking a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Signature matches (or signing is disabled).
    Valid,
    /// A key is set but the signature frame is empty.
    Unsigned,
    /// The signature does not match the frames.
    Invalid,
}

impl Signer {
    /// Creates a signer. `scheme` must be `hmac-sha256` (the only scheme ipyparallel uses by
    /// default); other schemes are rejected so that a misconfiguration is loud.
    pub fn new(key: &[u8], scheme: &str) -> Result<Self, String> {
        if scheme != "hmac-sha256" {
            return Err(format!(
                "unsupported signature scheme {scheme:?} (only hmac-sha256)"
            ));
        }
        if key.is_empty() {
            return Ok(Signer { keyed: None });
        }
        let keyed = HmacSha256::new_from_slice(key).map_err(|e| e.to_string())?;
        Ok(Signer { keyed: Some(keyed) })
    }

    /// A signer that neither signs nor checks.
    pub fn disabled() -> Self {
        Signer { keyed: None }
    }

    pub fn enabled(&self) -> bool {
        self.keyed.is_some()
    }

    /// Raw 32-byte digest of the four parts, or `None` when signing is disabled.
    pub fn digest(&self, parts: [&[u8]; 4]) -> Option<[u8; 32]> {
        let mut mac = self.keyed.clone()?;
        for p in parts {
            mac.update(p);
        }
        Some(mac.finalize().into_bytes().into())
    }

    /// Lowercase hex signature of the four parts (empty when signing is disabled).
    pub fn sign(&self, parts: [&[u8]; 4]) -> Vec<u8> {
        match self.digest(parts) {
            Some(d) => hex::encode(d).into_bytes(),
            None => Vec::new(),
        }
    }

    /// Checks `signature` (hex ASCII) against the four parts in constant time.
    pub fn verify(&self, signature: &[u8], parts: [&[u8]; 4]) -> Verdict {
        self.check(signature, parts).0
    }

    /// [`Signer::verify`] that also returns the message digest (the decoded signature, when
    /// valid): a receiver that remembers digests for replay detection needs no second HMAC.
    /// The digest is `None` when signing is disabled or the signature is not valid.
    pub fn check(&self, signature: &[u8], parts: [&[u8]; 4]) -> (Verdict, Option<[u8; 32]>) {
        let Some(keyed) = &self.keyed else {
            return (Verdict::Valid, None);
        };
        if signature.is_empty() {
            return (Verdict::Unsigned, None);
        }
        let mut raw = [0u8; 32];
        if hex::decode_to_slice(signature, &mut raw).is_err() {
            return (Verdict::Invalid, None);
        }
        let mut mac = keyed.clone();
        for p in parts {
            mac.update(p);
        }
        match mac.verify_slice(&raw) {
            Ok(()) => (Verdict::Valid, Some(raw)),
            Err(_) => (Verdict::Invalid, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of spec appendix A.1, captured from a live stock client.
    #[test]
    fn stock_test_vector() {
        let s = Signer::new(b"f4934482-9f3d54108a5fc58e8bfc8731", "hmac-sha256").unwrap();
        let header = br#"{"msg_id": "8bb5fcea-3e858ac1e101ec6266e17a2c_6896_0", "msg_type": "connection_request", "username": "username", "session": "8bb5fcea-3e858ac1e101ec6266e17a2c", "date": "2026-11-24T22:42:56.924289Z", "version": "5.4"}"#;
        let parts: [&[u8]; 4] = [header, b"{}", b"{}", b"{}"];
        let expected = b"e293ed8eb1cd95adcd984b4a6bf84d2c8d65671d3b35c57648fe219452f08797";
        assert_eq!(s.sign(parts), expected.to_vec());
        assert_eq!(s.verify(expected, parts), Verdict::Valid);
        assert_eq!(s.verify(b"", parts), Verdict::Unsigned);
        assert_eq!(s.verify(b"zz", parts), Verdict::Invalid);
        let tampered: [&[u8]; 4] = [header, b"{}", b"{}", b"{\"x\":1}"];
        assert_eq!(s.verify(expected, tampered), Verdict::Invalid);
        // the one-pass check agrees with verify and returns the digest
        let (v, d) = s.check(expected, parts);
        assert_eq!(v, Verdict::Valid);
        assert_eq!(d, s.digest(parts));
        assert_eq!(s.check(b"", parts), (Verdict::Unsigned, None));
        assert_eq!(s.check(b"zz", parts), (Verdict::Invalid, None));
        assert_eq!(s.check(expected, tampered), (Verdict::Invalid, None));
        let upper = String::from_utf8(expected.to_vec()).unwrap().to_uppercase();
        assert_eq!(
            s.verify(upper.as_bytes(), parts),
            s.check(upper.as_bytes(), parts).0
        );
    }

    #[test]
    fn empty_key_disables() {
        let s = Signer::new(b"", "hmac-sha256").unwrap();
        assert!(s.sign([b"a", b"b", b"c", b"d"]).is_empty());
        assert_eq!(
            s.verify(b"anything", [b"a", b"b", b"c", b"d"]),
            Verdict::Valid
        );
    }
}
