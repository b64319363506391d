//! The node's side of the control connection's TLS: join tokens, CA pinning, node keys and QUIC client configs.
//!
//! A node joins with a one-time token `<secret>.<sha256 of control's CA cert>`: the
//! token alone lets it trust control ([`join_client_config`] pins that CA), and it
//! sends a CSR for a key it made itself ([`new_node_key`]). From then on it connects
//! with mutual TLS ([`node_client_config`]) and trusts only the CA it was given.
//! Whatever address a node dials, it checks control's certificate for
//! [`CONTROL_SERVER_NAME`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::RootCertStore;
use rustls::SignatureScheme;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::danger::ServerCertVerified;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::ServerName;
use rustls_pki_types::UnixTime;
use rustls_pki_types::pem::PemObject;
use sha2::Digest;

use crate::CONTROL_SERVER_NAME;
use crate::SYNC_ALPN;
use crate::names::shorten;

/// How often an idle connection sends a keep-alive (well under [`IDLE_TIMEOUT`]).
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// How long a connection may stay silent before either side drops it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a token, key, certificate or TLS configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The join token is not `<secret>.<64 hex digits>`.
    #[error("malformed join token: {0}")]
    BadJoinToken(&'static str),
    /// A CA fingerprint is not 64 hex digits.
    #[error("malformed CA fingerprint {0:?} (expected 64 hex digits)")]
    BadFingerprint(String),
    /// PEM text holds no usable certificate or key.
    #[error("{what}: {reason}")]
    Pem {
        /// What was being read (`CA certificate`, `node key`, ...).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Making a key or a signing request failed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The certificate verifier could not be built (e.g. an unusable CA).
    #[error("TLS verifier: {0}")]
    Verifier(String),
    /// The TLS configuration cannot carry QUIC.
    #[error("QUIC: {0}")]
    Quic(String),
}

/// A join token split into its parts.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinTokenParts {
    /// The one-time secret control checks (hashed) before issuing a certificate.
    pub secret: String,
    /// SHA-256 (lowercase hex) of the DER of control's CA certificate, to pin it.
    pub ca_sha256: String,
}

impl fmt::Debug for JoinTokenParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinTokenParts")
            .field("secret", &"<redacted>")
            .field("ca_sha256", &self.ca_sha256)
            .finish()
    }
}

/// Splits a join token `<secret>.<sha256-hex-of-CA-cert-DER>` into its parts.
pub fn parse_join_token(token: &str) -> Result<JoinTokenParts, TlsError> {
    let token = token.trim();
    let (secret, ca) = token
        .split_once('.')
        .ok_or(TlsError::BadJoinToken("expected <secret>.<CA sha256>"))?;
    if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(TlsError::BadJoinToken(
            "the secret must be non-empty letters and digits",
        ));
    }
    if !is_sha256_hex(ca) {
        return Err(TlsError::BadJoinToken(
            "the CA fingerprint must be 64 hex digits",
        ));
    }
    Ok(JoinTokenParts {
        secret: secret.to_owned(),
        ca_sha256: ca.to_ascii_lowercase(),
    })
}

/// The SHA-256 (lowercase hex) of the DER of the first certificate in `ca_pem`.
pub fn ca_sha256(ca_pem: &str) -> Result<String, TlsError> {
    let der = first_cert(ca_pem, "CA certificate")?;
    Ok(sha256_hex(&der))
}

/// A freshly generated node key (ECDSA P-256) and a signing request for it.
#[derive(Clone)]
pub struct NodeKey {
    /// The private key, PKCS#8 PEM; keep it on the node (mode 0600).
    pub key_pem: String,
    /// PEM certificate signing request to send with [`Request::Join`](crate::wire::Request::Join).
    pub csr_pem: String,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("key_pem", &"<redacted>")
            .field("csr_pem", &self.csr_pem)
            .finish()
    }
}

/// Makes a node key and a CSR naming `name` (control assigns the certificate's real subject).
pub fn new_node_key(name: &str) -> Result<NodeKey, TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let csr = params.serialize_request(&key)?;
    Ok(NodeKey {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem()?,
    })
}

/// The client config a node joins with: no client certificate; control's certificate is
/// accepted only if its chain carries a CA whose SHA-256 is `ca_sha256` and it verifies
/// against that CA for [`CONTROL_SERVER_NAME`].
pub fn join_client_config(ca_sha256: &str) -> Result<quinn::ClientConfig, TlsError> {
    if !is_sha256_hex(ca_sha256) {
        return Err(TlsError::BadFingerprint(shorten(ca_sha256)));
    }
    let provider = ring_provider();
    let verifier = PinnedCaVerifier {
        ca_sha256: ca_sha256.to_ascii_lowercase(),
        provider: provider.clone(),
    };
    let crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    quic_client(crypto)
}

/// The client config of a joined node: mutual TLS with its certificate, trusting only `ca_pem`.
pub fn node_client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<quinn::ClientConfig, TlsError> {
    let provider = ring_provider();
    let mut roots = RootCertStore::empty();
    roots.add(first_cert(ca_pem, "CA certificate")?)?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| TlsError::Verifier(error.to_string()))?;
    let chain = vec![first_cert(cert_pem, "node certificate")?];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|error| TlsError::Pem {
        what: "node key",
        reason: error.to_string(),
    })?;
    let crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(chain, key)?;
    quic_client(crypto)
}

/// The transport settings both ends of the sync connection use.
pub fn transport_config() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE_INTERVAL));
    // 15 s always fits a QUIC idle timeout (it allows up to 2^62 ms).
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    transport
}

fn quic_client(mut crypto: rustls::ClientConfig) -> Result<quinn::ClientConfig, TlsError> {
    crypto.alpn_protocols = vec![SYNC_ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .map_err(|error| TlsError::Quic(error.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn first_cert(pem: &str, what: &'static str) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|error| TlsError::Pem {
        what,
        reason: error.to_string(),
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Trusts a server whose chain includes the CA with a known fingerprint (trust on a pinned hash).
#[derive(Debug)]
struct PinnedCaVerifier {
    ca_sha256: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|cert| sha256_hex(cert) == self.ca_sha256)
            .ok_or(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|error| rustls::Error::General(error.to_string()))?;
        let name = ServerName::try_from(CONTROL_SERVER_NAME)
            .map_err(|error| rustls::Error::General(error.to_string()))?;
        verifier.verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn join_tokens_split_into_secret_and_ca_pin() -> Result<(), TlsError> {
        let parts = parse_join_token(&format!("s3cr3t.{}", CA.to_uppercase()))?;
        assert_eq!(parts.secret, "s3cr3t");
        assert_eq!(parts.ca_sha256, CA);
        assert!(!format!("{parts:?}").contains("s3cr3t"));
        Ok(())
    }

    #[test]
    fn malformed_join_tokens_are_refused() {
        for bad in [
            "",
            "nodot",
            &format!(".{CA}"),
            &format!("a-b.{CA}"),
            "secret.abc",
            &format!("secret.{CA}.x"),
            &format!("secret.{}", "g".repeat(64)),
        ] {
            assert!(
                matches!(parse_join_token(bad), Err(TlsError::BadJoinToken(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn node_keys_come_with_a_parsable_csr() -> Result<(), TlsError> {
        let key = new_node_key("pop-1")?;
        assert!(key.key_pem.contains("PRIVATE KEY"));
        assert!(key.csr_pem.contains("CERTIFICATE REQUEST"));
        assert!(!format!("{key:?}").contains("PRIVATE KEY"));
        Ok(())
    }

    #[test]
    fn ca_fingerprint_is_the_sha256_of_the_der() -> Result<(), TlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())?.self_signed(&key)?;
        assert_eq!(ca_sha256(&cert.pem())?, sha256_hex(cert.der()));
        assert!(ca_sha256("not pem").is_err());
        Ok(())
    }

    #[test]
    fn client_configs_build() -> Result<(), TlsError> {
        assert!(join_client_config("short").is_err());
        join_client_config(CA)?;
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key)?;
        let node_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let node = rcgen::CertificateParams::new(Vec::<String>::new())?
            .signed_by(&node_key, &ca, &ca_key)?;
        node_client_config(&ca.pem(), &node.pem(), &node_key.serialize_pem())?;
        assert!(node_client_config(&ca.pem(), &node.pem(), "no key").is_err());
        Ok(())
    }
}
