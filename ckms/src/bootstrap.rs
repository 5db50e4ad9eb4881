//! `ckms bootstrap start`: provision a KMS that waits in bootstrap mode, trusting nothing but its attestation.
//!
//! 1. Fetch the server's certificate without trusting it ([`crate::verify::capture_certificate`]) and attest
//!    it: the quote verifies, the measurement is the expected one, report_data binds the certificate's key.
//! 2. Every later request goes over a connection pinned to that key ([`crate::pinned::PinnedKeyVerifier`]).
//! 3. A fresh-nonce `GET /attestation` (the server is live, the report is not replayed).
//! 4. `POST /csr`; sign it with a local CA (`--ca-cert` + `--ca-key`, P-256 CA keys) or write it out
//!    (`--csr-out`) and stop; a second run with `--cert-in` continues with the CA's answer.
//! 5. `POST /certificate`, `/redis-findex`, `/client-ca`, `/start`.
//! 6. `ckms verify` against the started KMS.
//!
//! The bootstrap API binds provisioning to one TLS client key: the pinned one, or else the first key that
//! changes the server's state. So every request presents a client key: the configured `--client-cert` /
//! `--client-key`, or an ephemeral P-256 key made for this run (its SPKI hash is printed). When the server
//! answers that it is locked to another key, or is no longer in bootstrap mode, someone else is provisioning
//! it: the command stops with [`CliError::ProvisionedByAnother`].

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64ct::{Base64, Encoding};
use der::{Decode, DecodePem, Encode, EncodePem, pem::LineEnding};
use serde_json::{Value, json};
use sha2::Digest;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::{Certificate, TbsCertificate};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::name::Name;
use x509_cert::request::CertReq;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use zeroize::Zeroizing;

use crate::cmd::{Ctx, Output};
use crate::error::{CliError, read_file, write_file};
use crate::http::{ClientIdentity, HttpClient};
use crate::verify::{self, ExpectationArgs, VerifyArgs};

/// `ckms bootstrap …`.
#[derive(clap::Subcommand, Debug)]
pub enum BootstrapCommand {
    /// Attest a server in bootstrap mode, provision it, start it, verify it.
    #[command(
        long_about = "Attest a KMS in bootstrap mode and provision it (zero-trust workflow).\n\n\
Nothing is sent before the server's RA-TLS certificate and a fresh-nonce report are verified; every request \
then goes over a TLS connection pinned to the attested key.\n\n\
Examples:\n  \
ckms --url https://127.0.0.1:9998 --ca-cert ca.pem bootstrap start --manifest manifest.json \\\n      \
--subject CN=kms.example.com --dns kms.example.com --ca-key ca.key \\\n      \
--redis-url redis://10.0.0.5:6379 --db-secret-file db.secret --client-ca users-ca.pem\n  \
# external CA, in two steps:\n  \
ckms --url https://kms:9998 bootstrap start --manifest m.json --subject CN=kms --csr-out kms.csr ...\n  \
ckms --url https://kms:9998 bootstrap start --manifest m.json --cert-in kms-chain.pem --redis-url ... "
    )]
    Start(StartArgs),
}

/// Options of `ckms bootstrap start`.
#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// What to expect of the server.
    #[command(flatten)]
    pub expect: ExpectationArgs,
    /// Subject of the API certificate (RFC 4514, e.g. `CN=kms.example.com,O=Example`).
    #[arg(long, required_unless_present = "cert_in")]
    pub subject: Option<String>,
    /// DNS name for the API certificate (repeatable).
    #[arg(long = "dns", value_name = "NAME")]
    pub dns: Vec<String>,
    /// IP address for the API certificate (repeatable).
    #[arg(long = "ip", value_name = "ADDR")]
    pub ip: Vec<String>,
    /// Ask for the quote in the API certificate (if the CA copies the extension: no RA-TLS port needed).
    #[arg(long)]
    pub include_quote: bool,
    /// Private key (PEM, P-256) of the local CA given with --ca-cert: sign the CSR here.
    #[arg(long, value_name = "PEM", conflicts_with_all = ["csr_out", "cert_in"])]
    pub ca_key: Option<PathBuf>,
    /// Days of validity of a locally signed API certificate.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Write the CSR here and stop (external CA); continue later with --cert-in.
    #[arg(long, value_name = "FILE", conflicts_with = "cert_in")]
    pub csr_out: Option<PathBuf>,
    /// The API certificate chain (PEM, leaf first) returned by the CA for an earlier --csr-out.
    #[arg(long, value_name = "PEM")]
    pub cert_in: Option<PathBuf>,
    /// Redis URL for the Redis-with-Findex store.
    #[arg(long, value_name = "URL", required_unless_present = "csr_out")]
    pub redis_url: Option<String>,
    /// File with the base64 of the 32-byte database secret.
    #[arg(long, value_name = "FILE", required_unless_present = "csr_out")]
    pub db_secret_file: Option<PathBuf>,
    /// CA (PEM) that issues user certificates (mTLS on the KMS).
    #[arg(long, value_name = "PEM")]
    pub client_ca: Option<PathBuf>,
    /// The RA-TLS port's URL, for the final `verify` (when the API certificate has no quote).
    #[arg(long, value_name = "URL")]
    pub ra_tls_url: Option<String>,
}

/// Runs `ckms bootstrap …`.
pub fn run(ctx: &Ctx, command: BootstrapCommand) -> Result<Output, CliError> {
    match command {
        BootstrapCommand::Start(a) => start(ctx, &a),
    }
}

fn post(client: &mut HttpClient, path: &str, body: &Value) -> Result<Value, CliError> {
    let bytes =
        Zeroizing::new(serde_json::to_vec(body).map_err(|e| CliError::Usage(e.to_string()))?);
    let resp = client.post(path, &bytes)?;
    check(path, &resp)?;
    serde_json::from_slice(&resp.body).map_err(|e| CliError::Response(format!("{path}: {e}")))
}

/// Turns an error answer into a [`CliError`]: [`CliError::ProvisionedByAnother`] when the server is locked
/// to another provisioner (403) or no longer has the bootstrap API (404: someone else started it).
fn check(path: &str, resp: &crate::http::HttpResponse) -> Result<(), CliError> {
    if resp.status == 200 {
        return Ok(());
    }
    let msg = serde_json::from_slice::<Value>(&resp.body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| resp.text());
    if resp.status == 403 && msg.starts_with(kms::bootstrap::LOCKED_TO_ANOTHER_PROVISIONER) {
        return Err(CliError::ProvisionedByAnother(format!(
            "the server answered {path} with: {msg}"
        )));
    }
    if resp.status == 404 {
        return Err(CliError::ProvisionedByAnother(format!(
            "the server has no bootstrap API any more ({path}: HTTP 404 {msg}): it was already \
             provisioned and started by someone"
        )));
    }
    Err(CliError::Server {
        status: resp.status,
        message: format!("{path}: {msg}"),
    })
}

/// The step printed when a value was set earlier in this bootstrap session by this same key.
const KEPT: &str = "{} already set in this bootstrap session by this client key (an earlier run): \
kept, not replaced (restart the server to provision it afresh)";

/// `Ok(None)` when the server refused a value because this session already has one (409): only this
/// provisioner's key can have set it (anyone else gets 403), so it is an earlier run's.
fn kept<T>(r: Result<T, CliError>) -> Result<Option<T>, CliError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(CliError::Server {
            status: 409,
            message,
        }) if message.contains(kms::bootstrap::ALREADY_SET) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The TLS client key this run provisions with: the configured client certificate, or an ephemeral
/// self-signed P-256 certificate. Returns it with the SHA-256 (hex) of its SubjectPublicKeyInfo.
fn provisioner_identity(ctx: &Ctx) -> Result<(ClientIdentity, String, bool), CliError> {
    let (id, ephemeral) = match verify::identity(ctx)? {
        Some(id) => (id, false),
        None => (ephemeral_identity()?, true),
    };
    let spki = id
        .chain
        .first()
        .and_then(|c| crate::pinned::spki_of(c.as_ref()))
        .ok_or_else(|| CliError::Usage("the client certificate does not parse".into()))?;
    Ok((id, hex::encode(sha2::Sha256::digest(&spki)), ephemeral))
}

/// A fresh P-256 key and a self-signed certificate for it (`CN=ckms provisioner`), valid for a day.
pub fn ephemeral_identity() -> Result<ClientIdentity, CliError> {
    struct SelfSigned(Name);
    impl BuilderProfile for SelfSigned {
        fn get_issuer(&self, _subject: &Name) -> Name {
            self.0.clone()
        }
        fn get_subject(&self) -> Name {
            self.0.clone()
        }
        fn build_extensions(
            &self,
            _spk: spki::SubjectPublicKeyInfoRef<'_>,
            _issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
            tbs: &TbsCertificate,
        ) -> x509_cert::builder::Result<Vec<Extension>> {
            use x509_cert::ext::ToExtension;
            // An extension makes it a v3 certificate (webpki parses only v3).
            Ok(vec![
                (&BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                })
                    .to_extension(tbs.subject(), &[])?,
            ])
        }
    }
    let key = loop {
        let mut seed = Zeroizing::new([0u8; 32]);
        crate::http::provider()
            .secure_random
            .fill(seed.as_mut_slice())
            .map_err(|_| CliError::Usage("no randomness".into()))?;
        if let Ok(k) = p256::ecdsa::SigningKey::from_slice(seed.as_slice()) {
            break k;
        }
    };
    let name: Name = "CN=ckms provisioner"
        .parse()
        .map_err(|_| CliError::Usage("name".into()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let time = |d: Duration| -> Result<Time, CliError> {
        der::DateTime::from_unix_duration(d)
            .map(Time::from)
            .map_err(|_| CliError::Usage("time out of range".into()))
    };
    let validity = Validity::new(
        time(now.saturating_sub(Duration::from_secs(3600)))?,
        time(now + Duration::from_secs(86_400))?,
    );
    let spki = spki::SubjectPublicKeyInfoOwned::from_key(key.verifying_key())
        .map_err(|_| CliError::Usage("key".into()))?;
    let serial = SerialNumber::new(&[1]).map_err(|_| CliError::Usage("serial".into()))?;
    let cert = CertificateBuilder::new(SelfSigned(name), serial, validity, spki)
        .map_err(|e| CliError::Usage(format!("certificate: {e}")))?
        .build::<_, p256::ecdsa::DerSignature>(&key)
        .map_err(|e| CliError::Usage(format!("signing: {e}")))?;
    let cert_der = cert
        .to_der()
        .map_err(|_| CliError::Usage("certificate encoding".into()))?;
    let key_der = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&key)
        .map_err(|_| CliError::Usage("key encoding".into()))?;
    Ok(ClientIdentity {
        chain: vec![rustls_pki_types::CertificateDer::from(cert_der)],
        key: rustls_pki_types::PrivateKeyDer::Pkcs8(key_der.as_bytes().to_vec().into()),
    })
}

fn start(ctx: &Ctx, a: &StartArgs) -> Result<Output, CliError> {
    let exp = a.expect.load()?;
    let url = ctx
        .settings
        .url
        .as_deref()
        .ok_or_else(|| CliError::Usage("--url is required".into()))?;
    let mut steps = Vec::new();

    // 1. Attest the bootstrap certificate, trusting nothing yet.
    let cert = verify::capture_certificate(url)?;
    let attested = verify::attest_certificate(&cert, &exp, "bootstrap certificate")?;
    steps.push(format!(
        "bootstrap certificate attested (measurement {})",
        attested.report.measurement_hex()
    ));

    // 2. Pin (presenting our provisioner key), 3. fresh report.
    let (identity, spki_hash, ephemeral) = provisioner_identity(ctx)?;
    // On stderr at once: if this run fails, the key the server is now locked to is on record.
    eprintln!(
        "ckms: provisioning with {} client key sha256:{spki_hash}",
        if ephemeral {
            "an ephemeral (this run only)"
        } else {
            "the configured"
        }
    );
    steps.push(format!(
        "provisioning as {} client key sha256:{spki_hash}",
        if ephemeral {
            "an ephemeral"
        } else {
            "the configured"
        }
    ));
    let mut client = verify::pinned_client(url, &attested.spki_der, Some(identity))?;
    let nonce = verify::fresh_nonce()?;
    let (_, log) = verify::fresh_attestation(&mut client, &attested.public_key, &nonce, &exp)?;
    steps.push("fresh /attestation verified (nonce bound, same key)".to_owned());
    steps.extend(log);

    // 4. Certificate.
    let chain_pem = match (&a.cert_in, &a.csr_out) {
        (Some(path), _) => {
            let pem = String::from_utf8(read_file(path)?)
                .map_err(|_| CliError::Usage(format!("{}: not PEM text", path.display())))?;
            // The CA's leaf must certify the attested key.
            let leaf_spki = kms::x509::pem_chain_der(pem.as_bytes())
                .ok()
                .and_then(|c| c.first().and_then(|l| crate::pinned::spki_of(l)))
                .ok_or_else(|| {
                    CliError::Usage(format!("{}: no PEM certificate", path.display()))
                })?;
            check_spki_is_attested(
                &leaf_spki,
                &attested.spki_der,
                "the --cert-in leaf certificate's key",
            )?;
            pem
        }
        (None, csr_out) => {
            let subject = a
                .subject
                .as_deref()
                .ok_or_else(|| CliError::Usage("--subject is required".into()))?;
            let csr = post(
                &mut client,
                "/csr",
                &json!({"subject": subject, "dns_names": a.dns, "ip_addresses": a.ip, "include_quote": a.include_quote}),
            )?;
            let csr_pem = csr
                .get("csr_pem")
                .and_then(Value::as_str)
                .ok_or_else(|| CliError::Response("/csr: no csr_pem".into()))?
                .to_owned();
            if let Some(out) = csr_out {
                check_csr_key(&csr_pem, &attested.spki_der)?;
                write_file(out, csr_pem.as_bytes())?;
                steps.push(format!("CSR written to {}", out.display()));
                let human = format!(
                    "{}\nhave the CSR signed, then run again with --cert-in <chain.pem> and the database options",
                    steps.join("\n")
                );
                return Ok(Output::new(
                    human,
                    json!({"steps": steps, "csr_pem": csr_pem}),
                ));
            }
            check_csr_key(&csr_pem, &attested.spki_der)?;
            steps.push("CSR key = the attested key (SubjectPublicKeyInfo, P-256)".to_owned());
            let (ca_cert, ca_key) = match (&ctx.settings.ca_cert, &a.ca_key) {
                (Some(c), Some(k)) => (c, k),
                _ => {
                    return Err(CliError::Usage(
                        "give --ca-cert and --ca-key (local CA), --csr-out FILE (external CA) or --cert-in FILE".into(),
                    ));
                }
            };
            let chain = sign_csr(
                &csr_pem,
                &read_file(ca_cert)?,
                &Zeroizing::new(read_file(ca_key)?),
                a.days,
            )?;
            steps.push(format!("CSR signed by the local CA {}", ca_cert.display()));
            chain
        }
    };
    match kept(post(
        &mut client,
        "/certificate",
        &json!({"chain_pem": chain_pem}),
    ))? {
        Some(r) => {
            let has_quote = r
                .get("api_certificate_has_quote")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            steps.push(format!(
                "API certificate accepted (quote inside: {has_quote})"
            ));
        }
        None => steps.push(KEPT.replace("{}", "API certificate")),
    }

    // 5. Database, client CA, start.
    let redis_url = a
        .redis_url
        .as_deref()
        .ok_or_else(|| CliError::Usage("--redis-url is required".into()))?;
    let secret_path = a
        .db_secret_file
        .as_deref()
        .ok_or_else(|| CliError::Usage("--db-secret-file is required".into()))?;
    let secret = read_secret(secret_path)?;
    let body = Zeroizing::new(json!({"url": redis_url, "db_secret": secret.as_str()}).to_string());
    let resp = client.post("/redis-findex", body.as_bytes())?;
    match kept(check("/redis-findex", &resp))? {
        Some(()) => steps.push("database configured".to_owned()),
        None => steps.push(KEPT.replace("{}", "database")),
    }
    if let Some(ca) = &a.client_ca {
        let pem = String::from_utf8(read_file(ca)?)
            .map_err(|_| CliError::Usage(format!("{}: not PEM", ca.display())))?;
        match kept(post(&mut client, "/client-ca", &json!({"ca_pem": pem})))? {
            Some(_) => steps.push(format!("client CA {} set", ca.display())),
            None => steps.push(KEPT.replace("{}", "client CA")),
        }
    }
    let started = post(&mut client, "/start", &json!({}))?;
    steps.push(format!("started: {started}"));
    drop(client);

    // 6. Verify the running KMS.
    let verify_args = VerifyArgs {
        ra_tls_url: a.ra_tls_url.clone(),
        expect: a.expect.clone(),
    };
    let verified = verify::verify(ctx, &verify_args).map_err(|e| match e {
        CliError::Negative(m) => CliError::Negative(format!("the KMS started but {m}")),
        other => other,
    })?;
    let human = format!("{}\n{}", steps.join("\n"), verified.human);
    Ok(Output::new(
        human,
        json!({"steps": steps, "verify": verified.json}),
    ))
}

/// Reads a db secret file: base64 of exactly 32 bytes.
fn read_secret(path: &std::path::Path) -> Result<Zeroizing<String>, CliError> {
    let raw = Zeroizing::new(read_file(path)?);
    let text = std::str::from_utf8(&raw)
        .map_err(|_| CliError::Usage(format!("{}: not base64", path.display())))?;
    let text = Zeroizing::new(text.trim().to_owned());
    let bytes = Zeroizing::new(
        Base64::decode_vec(&text)
            .map_err(|_| CliError::Usage(format!("{}: not base64", path.display())))?,
    );
    if bytes.len() != 32 {
        return Err(CliError::Usage(format!(
            "{}: the secret must be 32 bytes (base64)",
            path.display()
        )));
    }
    Ok(text)
}

/// Profile of a CA-issued leaf: the issuer is the CA's subject; extensions are the CSR's plus
/// basicConstraints CA:FALSE and keyUsage digitalSignature.
struct Issued {
    subject: Name,
    issuer: Name,
    requested: Vec<Extension>,
}

impl BuilderProfile for Issued {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }
    fn get_subject(&self) -> Name {
        self.subject.clone()
    }
    fn build_extensions(
        &self,
        _spk: spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        use x509_cert::ext::ToExtension;
        let mut exts = vec![
            (&BasicConstraints {
                ca: false,
                path_len_constraint: None,
            })
                .to_extension(tbs.subject(), &[])?,
            (&KeyUsage(KeyUsages::DigitalSignature.into())).to_extension(tbs.subject(), &[])?,
        ];
        exts.extend(self.requested.iter().filter(|e| exts_allowed(e)).cloned());
        Ok(exts)
    }
}

/// Requested extensions a local CA copies: subjectAltName, extendedKeyUsage, and the RA-TLS quotes.
fn exts_allowed(e: &Extension) -> bool {
    const SAN: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.29.17");
    const EKU: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.29.37");
    let s = e.extn_id.to_string();
    e.extn_id == SAN
        || e.extn_id == EKU
        || s == attest::ratls::OID_SNP_QUOTE
        || s == attest::ratls::OID_TDX_QUOTE
}

/// The extensions requested in a CSR (PKCS#9 extensionRequest, RFC 2985 §5.4.2).
fn requested_extensions(csr: &CertReq) -> Result<Vec<Extension>, CliError> {
    const EXTENSION_REQ: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");
    let mut out = Vec::new();
    for attr in csr
        .info
        .attributes
        .iter()
        .filter(|a| a.oid == EXTENSION_REQ)
    {
        for value in attr.values.iter() {
            let exts: Vec<Extension> = value
                .decode_as()
                .map_err(|_| CliError::Response("CSR extensionRequest does not parse".into()))?;
            out.extend(exts);
        }
    }
    Ok(out)
}

/// id-ecPublicKey (RFC 5480).
const OID_EC_PUBLIC_KEY: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 / secp256r1 (RFC 5480).
const OID_PRIME256V1: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Checks that a DER SubjectPublicKeyInfo is an id-ecPublicKey on prime256v1 (the OIDs, not only
/// the key bytes) and byte-equal to `attested_spki`.
pub fn check_spki_is_attested(
    spki_der: &[u8],
    attested_spki: &[u8],
    what: &'static str,
) -> Result<(), CliError> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der)
        .map_err(|_| CliError::NotAttestedKey { what })?;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok());
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY
        || curve != Some(OID_PRIME256V1)
        || spki_der != attested_spki
    {
        return Err(CliError::NotAttestedKey { what });
    }
    Ok(())
}

/// Checks, before it is signed or handed to a CA, that a PEM CSR asks to certify the attested key.
pub fn check_csr_key(csr_pem: &str, attested_spki: &[u8]) -> Result<(), CliError> {
    let csr = CertReq::from_pem(csr_pem.as_bytes())
        .map_err(|_| CliError::Response("the CSR does not parse".into()))?;
    let spki = csr
        .info
        .public_key
        .to_der()
        .map_err(|_| CliError::Response("CSR key".into()))?;
    check_spki_is_attested(&spki, attested_spki, "the CSR's key")
}

/// Signs a PEM CSR with a local P-256 CA; returns the chain PEM (leaf then CA certificate).
pub fn sign_csr(
    csr_pem: &str,
    ca_cert_pem: &[u8],
    ca_key_pem: &[u8],
    days: u32,
) -> Result<String, CliError> {
    let csr = CertReq::from_pem(csr_pem.as_bytes())
        .map_err(|_| CliError::Response("the CSR does not parse".into()))?;
    // The CSR must be signed by the key it names (RFC 2986 §3): the server holds that key.
    let spki_der = csr
        .info
        .public_key
        .to_der()
        .map_err(|_| CliError::Response("CSR key".into()))?;
    let vk = <p256::ecdsa::VerifyingKey as spki::DecodePublicKey>::from_public_key_der(&spki_der)
        .map_err(|_| CliError::Response("the CSR key is not P-256".into()))?;
    let sig = p256::ecdsa::DerSignature::from_bytes(csr.signature.raw_bytes())
        .map_err(|_| CliError::Response("CSR signature encoding".into()))?;
    let info = csr
        .info
        .to_der()
        .map_err(|_| CliError::Response("CSR encoding".into()))?;
    signature::Verifier::verify(&vk, &info, &sig)
        .map_err(|_| CliError::Negative("the CSR signature does not verify".into()))?;

    // A single certificate or a bundle: the CA is its first certificate.
    let ca = Certificate::load_pem_chain(ca_cert_pem.trim_ascii())
        .ok()
        .and_then(|chain| chain.into_iter().next())
        .ok_or_else(|| CliError::Usage("the CA certificate does not parse (PEM)".into()))?;
    let key_text = Zeroizing::new(
        std::str::from_utf8(ca_key_pem)
            .map_err(|_| CliError::Usage("CA key is not PEM".into()))?
            .to_owned(),
    );
    let ca_key =
        <p256::ecdsa::SigningKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_pem(&key_text)
            .or_else(|_| {
                p256::SecretKey::from_sec1_pem(&key_text).map(p256::ecdsa::SigningKey::from)
            })
            .map_err(|_| {
                CliError::Usage("the CA key is not a P-256 private key (PKCS#8 or SEC1 PEM)".into())
            })?;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let time = |d: Duration| -> Result<Time, CliError> {
        der::DateTime::from_unix_duration(d)
            .map(Time::from)
            .map_err(|_| CliError::Usage("time out of range".into()))
    };
    let validity = Validity::new(
        time(now.saturating_sub(Duration::from_secs(3600)))?,
        time(now + Duration::from_secs(u64::from(days.max(1)) * 86_400))?,
    );
    let mut serial = [0u8; 16];
    crate::http::provider()
        .secure_random
        .fill(&mut serial)
        .map_err(|_| CliError::Usage("no randomness".into()))?;
    serial[0] = (serial[0] & 0x7F) | 0x01;
    let serial = SerialNumber::new(&serial).map_err(|_| CliError::Usage("serial".into()))?;
    let profile = Issued {
        subject: csr.info.subject.clone(),
        issuer: ca.tbs_certificate().subject().clone(),
        requested: requested_extensions(&csr)?,
    };
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(&spki_der)
        .map_err(|_| CliError::Response("CSR key".into()))?;
    let cert = CertificateBuilder::new(profile, serial, validity, spki)
        .map_err(|e| CliError::Usage(format!("certificate: {e}")))?
        .build::<_, p256::ecdsa::DerSignature>(&ca_key)
        .map_err(|e| CliError::Usage(format!("signing: {e}")))?;
    let mut chain = cert
        .to_pem(LineEnding::LF)
        .map_err(|_| CliError::Usage("PEM".into()))?;
    chain.push_str(
        &ca.to_pem(LineEnding::LF)
            .map_err(|_| CliError::Usage("PEM".into()))?,
    );
    Ok(chain)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use der::asn1::{Ia5String, OctetString};
    use p256::pkcs8::EncodePrivateKey;
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::request::RequestBuilder;

    /// A self-signed P-256 CA: (certificate PEM, PKCS#8 key PEM).
    pub(crate) fn ca() -> (String, String) {
        struct Root(Name);
        impl BuilderProfile for Root {
            fn get_issuer(&self, _: &Name) -> Name {
                self.0.clone()
            }
            fn get_subject(&self) -> Name {
                self.0.clone()
            }
            fn build_extensions(
                &self,
                _: spki::SubjectPublicKeyInfoRef<'_>,
                _: spki::SubjectPublicKeyInfoRef<'_>,
                tbs: &TbsCertificate,
            ) -> x509_cert::builder::Result<Vec<Extension>> {
                use x509_cert::ext::ToExtension;
                let bc = BasicConstraints {
                    ca: true,
                    path_len_constraint: None,
                };
                Ok(vec![(&bc).to_extension(tbs.subject(), &[])?])
            }
        }
        let key = p256::ecdsa::SigningKey::from_slice(&[0x21; 32]).unwrap();
        let name: Name = "CN=Unit CA".parse().unwrap();
        let t = |s| Time::from(der::DateTime::from_unix_duration(Duration::from_secs(s)).unwrap());
        let spki = spki::SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).unwrap();
        let cert = CertificateBuilder::new(
            Root(name),
            SerialNumber::new(&[1]).unwrap(),
            Validity::new(t(1_700_000_000), t(2_000_000_000)),
            spki,
        )
        .unwrap()
        .build::<_, p256::ecdsa::DerSignature>(&key)
        .unwrap();
        let key_pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        (cert.to_pem(LineEnding::LF).unwrap(), key_pem)
    }

    fn csr(quote: &[u8]) -> String {
        let key = p256::ecdsa::SigningKey::from_slice(&[0x22; 32]).unwrap();
        let mut b = RequestBuilder::new("CN=kms.unit".parse().unwrap()).unwrap();
        let san = SubjectAltName(vec![GeneralName::DnsName(
            Ia5String::new("kms.unit").unwrap(),
        )]);
        b.add_extension(&san).unwrap();
        b.add_extension(Extension {
            extn_id: attest::ratls::OID_SNP_QUOTE.parse().unwrap(),
            critical: false,
            extn_value: OctetString::new(quote).unwrap(),
        })
        .unwrap();
        b.build::<_, p256::ecdsa::DerSignature>(&key)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
    }

    #[test]
    fn local_ca_copies_names_and_quote_and_signs() {
        let (ca_pem, ca_key) = ca();
        let quote = b"QUOTE-BYTES".to_vec();
        let chain = sign_csr(&csr(&quote), ca_pem.as_bytes(), ca_key.as_bytes(), 10).unwrap();
        let certs = Certificate::load_pem_chain(chain.as_bytes()).unwrap();
        assert_eq!(certs.len(), 2, "leaf and CA");
        let leaf = &certs[0];
        assert_eq!(leaf.tbs_certificate().subject().to_string(), "CN=kms.unit");
        assert_eq!(leaf.tbs_certificate().issuer().to_string(), "CN=Unit CA");
        let der = leaf.to_der().unwrap();
        assert!(der.windows(8).any(|w| w == b"kms.unit"), "SAN copied");
        assert!(der.windows(quote.len()).any(|w| w == quote), "quote copied");
        assert_eq!(
            crate::pinned::spki_of(&der).unwrap().len(),
            91,
            "P-256 SPKI of the CSR key"
        );
        // The CA's signature verifies with the CA key.
        let ca = Certificate::from_pem(ca_pem.as_bytes()).unwrap();
        let ca_spki = ca
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap();
        let vk =
            <p256::ecdsa::VerifyingKey as spki::DecodePublicKey>::from_public_key_der(&ca_spki)
                .unwrap();
        let sig = p256::ecdsa::DerSignature::from_bytes(leaf.signature().raw_bytes()).unwrap();
        signature::Verifier::verify(&vk, &leaf.tbs_certificate().to_der().unwrap(), &sig).unwrap();
        assert!(chain.ends_with(&ca_pem), "chain = leaf then CA");
    }

    /// Issue 12 (low): the CSR must carry the attested key, compared as a whole SPKI: the same key
    /// bytes under another curve OID are refused too.
    #[test]
    fn csr_key_must_be_the_attested_key() {
        let attested = p256::ecdsa::SigningKey::from_slice(&[0x22; 32]).unwrap();
        let attested_spki = spki::SubjectPublicKeyInfoOwned::from_key(attested.verifying_key())
            .unwrap()
            .to_der()
            .unwrap();
        let pem = csr(b"Q");
        check_csr_key(&pem, &attested_spki).unwrap();
        let other = p256::ecdsa::SigningKey::from_slice(&[0x23; 32]).unwrap();
        let other_spki = spki::SubjectPublicKeyInfoOwned::from_key(other.verifying_key())
            .unwrap()
            .to_der()
            .unwrap();
        let e = check_csr_key(&pem, &other_spki).unwrap_err();
        assert!(
            matches!(
                e,
                CliError::NotAttestedKey {
                    what: "the CSR's key"
                }
            ),
            "{e}"
        );
        // Same point, curve OID secp256k1 (1.3.132.0.10) instead of prime256v1: refused before
        // any byte comparison could be fooled by a pin made from the same bytes.
        let mut k1 = attested_spki.clone();
        let p256_oid = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
        let at = k1.windows(10).position(|w| w == p256_oid).unwrap();
        let k1_oid = [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x0A];
        k1.splice(at..at + 10, k1_oid);
        k1[1] -= 3;
        k1[3] -= 3;
        assert!(matches!(
            check_spki_is_attested(&k1, &k1, "x"),
            Err(CliError::NotAttestedKey { what: "x" })
        ));
        assert!(matches!(
            check_spki_is_attested(&k1, &attested_spki, "x"),
            Err(CliError::NotAttestedKey { .. })
        ));
    }

    #[test]
    fn tampered_csr_is_refused() {
        let (ca_pem, ca_key) = ca();
        let pem = csr(b"Q");
        let mut req = CertReq::from_pem(pem.as_bytes()).unwrap();
        req.info.subject = "CN=evil".parse().unwrap();
        let tampered = req.to_pem(LineEnding::LF).unwrap();
        let err = sign_csr(&tampered, ca_pem.as_bytes(), ca_key.as_bytes(), 10).unwrap_err();
        assert!(
            matches!(&err, CliError::Negative(m) if m.contains("CSR signature does not verify")),
            "{err}"
        );
        let err = sign_csr(&pem, ca_pem.as_bytes(), b"not a key", 10).unwrap_err();
        assert!(
            matches!(&err, CliError::Usage(m) if m.contains("not a P-256 private key")),
            "{err}"
        );
        let err = sign_csr(&pem, b"not a certificate", ca_key.as_bytes(), 10).unwrap_err();
        assert!(
            matches!(&err, CliError::Usage(m) if m.contains("CA certificate does not parse")),
            "{err}"
        );
    }
}
