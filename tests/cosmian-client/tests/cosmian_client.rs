//! The published Cosmian KMS client crate (`cosmian_kms_client` 5.28 from crates.io) against
//! `kms-server` (memory store) over JSON TTLV (`POST /kmip/2_1`) with mutual TLS: create an
//! AES-256 key, get it, activate it, encrypt and decrypt with it, revoke and destroy it, and see
//! it gone.
//!
//! Needs the `kms-server` binary of the root workspace (`cargo build -p kms-server` at the repo
//! root) or its path in `KMS_SERVER`.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use cosmian_kms_client::kmip_0::kmip_types::{
    CryptographicUsageMask, RevocationReason, RevocationReasonCode,
};
use cosmian_kms_client::kmip_2_1::kmip_attributes::Attributes;
use cosmian_kms_client::kmip_2_1::kmip_objects::{Object, ObjectType};
use cosmian_kms_client::kmip_2_1::kmip_operations::{
    Activate, Create, Decrypt, Destroy, Encrypt, Get, Revoke,
};
use cosmian_kms_client::kmip_2_1::kmip_types::{CryptographicAlgorithm, UniqueIdentifier};
use cosmian_kms_client::reexport::cosmian_http_client::HttpClientConfig;
use cosmian_kms_client::{KmsClient, KmsClientConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// `kms-server`, killed by PID when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kms_server_bin() -> PathBuf {
    let bin = std::env::var_os("KMS_SERVER").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/kms-server"),
        PathBuf::from,
    );
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p kms-server` at the repository root or set KMS_SERVER",
        bin.display()
    );
    bin
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate `CN=cosmian-client`,
/// written as PEM files into `dir`; returns (ca, server cert, server key, client cert, client key).
fn pki(dir: &Path) -> [PathBuf; 5] {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name
        .push(DnType::CommonName, "cosmian client test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca, ca_key);

    let leaf = |names: Vec<String>, cn: &str, eku| {
        let key = KeyPair::generate().expect("leaf key");
        let mut p = CertificateParams::new(names).expect("leaf params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![eku];
        let cert = p.signed_by(&key, &issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".to_owned()],
        "127.0.0.1",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        Vec::new(),
        "cosmian-client",
        ExtendedKeyUsagePurpose::ClientAuth,
    );

    [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", server_cert),
        ("server.key", server_key),
        ("client.pem", client_cert),
        ("client.key", client_key),
    ]
    .map(|(name, pem)| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    })
}

fn start_server(dir: &Path, ca: &Path, cert: &Path, key: &Path) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = Command::new(kms_server_bin())
        .current_dir(dir)
        .args(["--database", "memory", "--port", &port.to_string()])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .arg("--client-ca")
        .arg(ca)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start kms-server");
    let stdout = child.stdout.take().expect("piped stdout");
    let server = Server(child);
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("kms-server exited before its ready line")
            .expect("kms-server stdout");
        if line.contains("kms-server listening on") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    (server, port)
}

fn uid(u: &UniqueIdentifier) -> String {
    match u {
        UniqueIdentifier::TextString(s) => s.clone(),
        other => panic!("the server returned a non-text unique identifier: {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn cosmian_client_create_get_encrypt_decrypt_destroy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let [ca, server_cert, server_key, client_cert, client_key] = pki(dir.path());
    let (_server, port) = start_server(dir.path(), &ca, &server_cert, &server_key);

    let config = KmsClientConfig {
        http_config: HttpClientConfig {
            server_url: format!("https://127.0.0.1:{port}"),
            verified_cert: Some(std::fs::read_to_string(&ca).expect("CA PEM")),
            tls_client_pem_cert_path: Some(client_cert.display().to_string()),
            tls_client_pem_key_path: Some(client_key.display().to_string()),
            ..HttpClientConfig::default()
        },
        ..KmsClientConfig::default()
    };
    let client = KmsClient::new_with_config(config).expect("Cosmian client");

    let created = client
        .create(Create {
            object_type: ObjectType::SymmetricKey,
            attributes: Attributes {
                object_type: Some(ObjectType::SymmetricKey),
                cryptographic_algorithm: Some(CryptographicAlgorithm::AES),
                cryptographic_length: Some(256),
                cryptographic_usage_mask: Some(
                    CryptographicUsageMask::Encrypt | CryptographicUsageMask::Decrypt,
                ),
                ..Attributes::default()
            },
            protection_storage_masks: None,
        })
        .await
        .expect("Create");
    assert_eq!(created.object_type, ObjectType::SymmetricKey);
    let id = uid(&created.unique_identifier);
    let key_id = || Some(UniqueIdentifier::TextString(id.clone()));

    let got = client
        .get(Get {
            unique_identifier: key_id(),
            ..Get::default()
        })
        .await
        .expect("Get");
    assert_eq!(uid(&got.unique_identifier), id);
    assert_eq!(got.object_type, ObjectType::SymmetricKey);
    let Object::SymmetricKey(key) = &got.object else {
        panic!("Get returned {:?}, not a symmetric key", got.object_type);
    };
    let bytes = key.key_block.key_bytes().expect("key bytes");
    assert_eq!(bytes.len(), 32, "an AES-256 key has 32 bytes");

    // A new key is PreActive (KMIP 2.1 §4.57): it encrypts once activated.
    client
        .activate(Activate {
            unique_identifier: UniqueIdentifier::TextString(id.clone()),
        })
        .await
        .expect("Activate");

    let plaintext = b"the Cosmian client against this KMS".to_vec();
    let encrypted = client
        .encrypt(Encrypt {
            unique_identifier: key_id(),
            data: Some(plaintext.clone().into()),
            ..Encrypt::default()
        })
        .await
        .expect("Encrypt");
    let ciphertext = encrypted.data.expect("ciphertext");
    assert_ne!(ciphertext, plaintext, "the ciphertext is not the plaintext");

    let decrypted = client
        .decrypt(Decrypt {
            unique_identifier: key_id(),
            data: Some(ciphertext.clone()),
            i_v_counter_nonce: encrypted.i_v_counter_nonce.clone(),
            authenticated_encryption_tag: encrypted.authenticated_encryption_tag.clone(),
            ..Decrypt::default()
        })
        .await
        .expect("Decrypt");
    assert_eq!(
        decrypted.data.as_deref().map(Vec::as_slice),
        Some(&plaintext[..])
    );

    // A changed ciphertext must not decrypt (AEAD by default) or not to the plaintext.
    let mut tampered = ciphertext;
    if let Some(b) = tampered.first_mut() {
        *b ^= 1;
    }
    let bad = client
        .decrypt(Decrypt {
            unique_identifier: key_id(),
            data: Some(tampered),
            i_v_counter_nonce: encrypted.i_v_counter_nonce,
            authenticated_encryption_tag: encrypted.authenticated_encryption_tag,
            ..Decrypt::default()
        })
        .await;
    assert!(
        bad.as_ref()
            .map_or(true, |r| r.data.as_deref().map(Vec::as_slice)
                != Some(&plaintext[..])),
        "a tampered ciphertext decrypted to the plaintext"
    );

    // An active key is revoked before it is destroyed.
    client
        .revoke(Revoke {
            unique_identifier: key_id(),
            revocation_reason: RevocationReason {
                revocation_reason_code: RevocationReasonCode::CessationOfOperation,
                revocation_message: None,
            },
            compromise_occurrence_date: None,
            cascade: false,
        })
        .await
        .expect("Revoke");

    let destroyed = client
        .destroy(Destroy {
            unique_identifier: key_id(),
            ..Destroy::default()
        })
        .await
        .expect("Destroy");
    assert_eq!(uid(&destroyed.unique_identifier), id);

    // The destroyed key's material is gone: a Get fails or returns no key material.
    let after = client
        .get(Get {
            unique_identifier: key_id(),
            ..Get::default()
        })
        .await;
    if let Ok(r) = after {
        let material = match &r.object {
            Object::SymmetricKey(k) => k.key_block.key_bytes().ok(),
            _ => None,
        };
        assert!(
            material.is_none(),
            "Get after Destroy still returns the key"
        );
    }
}
