//! Access rights, as the Cosmian KMS has them: the user who creates (or imports) an object owns
//! it and may do everything with it; the owner grants other users rights per operation.
//!
//! This module has the right names, their bit set, and the JSON shapes of the `/access/*`
//! REST endpoints; the checks themselves happen in [`crate::Kms`].

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::kmip::types::Operation;

macro_rules! rights {
    ($($(#[$m:meta])* $v:ident = $bit:literal, $name:literal $(| $alias:literal)*;)+) => {
        /// One operation a grant allows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Right { $($(#[$m])* $v),+ }

        impl Right {
            /// Every right.
            pub const ALL: &'static [Right] = &[$(Right::$v),+];
            /// The bit in a grant mask.
            pub fn bit(self) -> u32 { match self { $(Right::$v => $bit),+ } }
            /// The name used in the REST API.
            pub fn name(self) -> &'static str { match self { $(Right::$v => $name),+ } }
            /// From a REST name (case-insensitive, `_`/`-` ignored, aliases accepted).
            pub fn from_name(n: &str) -> Option<Self> {
                let n: String = n.chars().filter(|c| !matches!(c, '_' | '-' | ' ')).collect::<String>().to_ascii_lowercase();
                $(
                    if n == $name.replace('_', "") $(|| n == $alias)* { return Some(Right::$v); }
                )+
                None
            }
        }
    };
}

// Names as the Cosmian KMS serializes its `KmipOperation` (serde `rename_all = "lowercase"`).
rights! {
    /// Get (and GetAttributes; Export of symmetric and public keys). Private key material
    /// needs [`Right::Export`].
    Get = 0x0001, "get";
    /// Export (and Get of a private key's material).
    Export = 0x0002, "export";
    /// Encrypt.
    Encrypt = 0x0004, "encrypt";
    /// Decrypt.
    Decrypt = 0x0008, "decrypt";
    /// Sign.
    Sign = 0x0010, "sign";
    /// SignatureVerify.
    SignatureVerify = 0x0020, "signatureverify" | "verify";
    /// Destroy.
    Destroy = 0x0040, "destroy";
    /// Revoke.
    Revoke = 0x0080, "revoke";
    /// ReKey.
    Rekey = 0x0100, "rekey";
    /// GetAttributes and GetAttributeList.
    GetAttributes = 0x0200, "getattributes";
    /// Locate (the object is listed by Locate).
    Locate = 0x0400, "locate";
    /// Activate.
    Activate = 0x0800, "activate";
    /// SetAttribute.
    SetAttribute = 0x1000, "setattribute";
    /// Import. Accepted for Cosmian clients; allows nothing: replacing an existing object
    /// (Import with ReplaceExisting) is the owner's alone.
    Import = 0x2000, "import";
    /// AddAttribute.
    AddAttribute = 0x4000, "addattribute";
    /// ModifyAttribute.
    ModifyAttribute = 0x8000, "modifyattribute";
    /// DeleteAttribute.
    DeleteAttribute = 0x1_0000, "deleteattribute";
}

/// The rights of a mask, in a stable order.
pub fn mask_rights(mask: u32) -> Vec<Right> {
    Right::ALL
        .iter()
        .copied()
        .filter(|r| mask & r.bit() != 0)
        .collect()
}

/// The right an operation on an existing object needs (`None`: not object-scoped). This is the
/// one table [`crate::Kms`] checks against.
///
/// ModifyAttribute is served as SetAttribute (same semantics here) and needs the SetAttribute
/// right; the `modifyattribute` right can be granted (Cosmian clients send it) but allows
/// nothing beyond it. Locate lists the objects a user owns or holds the Locate right on.
/// A user holding no right at all on an object is told it does not exist.
///
/// MAC and MACVerify are the symmetric counterparts of signing: they need the `sign` and
/// `signatureverify` rights. RNGRetrieve, RNGSeed and Hash touch no object (any authenticated
/// user).
pub fn right_for(op: Operation) -> Option<Right> {
    Some(match op {
        Operation::Get => Right::Get,
        Operation::Export => Right::Export,
        Operation::Encrypt => Right::Encrypt,
        Operation::Decrypt => Right::Decrypt,
        Operation::Sign | Operation::MAC => Right::Sign,
        Operation::SignatureVerify | Operation::MACVerify => Right::SignatureVerify,
        Operation::Destroy => Right::Destroy,
        Operation::Revoke => Right::Revoke,
        Operation::ReKey => Right::Rekey,
        Operation::GetAttributes | Operation::GetAttributeList => Right::GetAttributes,
        Operation::Activate => Right::Activate,
        Operation::AddAttribute => Right::AddAttribute,
        Operation::SetAttribute | Operation::ModifyAttribute => Right::SetAttribute,
        Operation::DeleteAttribute => Right::DeleteAttribute,
        Operation::Import | Operation::Register => Right::Import,
        Operation::Locate => Right::Locate,
        _ => return None,
    })
}

/// Body of `POST /access/grant` and `POST /access/revoke`. Cosmian clients send
/// `operation_types` (a list); older ones `operation_type` (one).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AccessRequest {
    /// The object (a uid or a `["tag"]` list).
    pub unique_identifier: String,
    /// The user receiving or losing the rights.
    pub user_id: String,
    /// Rights by name.
    #[serde(default)]
    pub operation_types: Vec<String>,
    /// A single right by name (older clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_type: Option<String>,
}

impl AccessRequest {
    /// Every right named, singular and plural fields together.
    pub fn operations(&self) -> Vec<String> {
        let mut v = self.operation_types.clone();
        if let Some(o) = &self.operation_type {
            v.push(o.clone());
        }
        v
    }
}

/// `{"success": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccessResponse {
    /// Human-readable confirmation.
    pub success: String,
}

/// One element of `GET /access/list/{uid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAccess {
    /// The grantee.
    pub user_id: String,
    /// Rights granted.
    pub operations: Vec<String>,
}

/// One element of `GET /access/owned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedObject {
    /// Object uid.
    pub object_id: String,
    /// KMIP state name.
    pub state: String,
    /// A summary of the object's attributes (object type, algorithm, length, tags).
    pub attributes: serde_json::Value,
    /// Always false here (no key wrapping).
    pub is_wrapped: bool,
}

/// One element of `GET /access/obtained`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObtainedAccess {
    /// Object uid.
    pub object_id: String,
    /// The owner.
    pub owner_id: String,
    /// KMIP state name.
    pub state: String,
    /// Rights obtained.
    pub operations: Vec<String>,
    /// Always false here.
    pub is_wrapped: bool,
}

/// Names of the rights in `mask`.
pub fn mask_names(mask: u32) -> Vec<String> {
    mask_rights(mask)
        .into_iter()
        .map(|r| r.name().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases() {
        assert_eq!(Right::from_name("get"), Some(Right::Get));
        assert_eq!(
            Right::from_name("GetAttributes"),
            Some(Right::GetAttributes)
        );
        assert_eq!(
            Right::from_name("get_attributes"),
            Some(Right::GetAttributes)
        );
        assert_eq!(Right::from_name("verify"), Some(Right::SignatureVerify));
        assert_eq!(Right::from_name("fly"), None);
        for r in Right::ALL {
            assert_eq!(Right::from_name(r.name()), Some(*r));
        }
        assert_eq!(
            mask_names(Right::Get.bit() | Right::Decrypt.bit()),
            ["get", "decrypt"]
        );
    }

    #[test]
    fn request_accepts_singular_and_plural() {
        let r: AccessRequest = serde_json::from_str(
            r#"{"unique_identifier":"u","user_id":"bob","operation_type":"encrypt"}"#,
        )
        .unwrap();
        assert_eq!(r.operations(), ["encrypt"]);
        let r: AccessRequest = serde_json::from_str(
            r#"{"unique_identifier":"u","user_id":"bob","operation_types":["get","decrypt"]}"#,
        )
        .unwrap();
        assert_eq!(r.operations(), ["get", "decrypt"]);
    }
}
