//! Control's certificate authority: the CA, control's QUIC server certificate, node certificates issued from CSRs.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use outpost_proto::CONTROL_SERVER_NAME;
use outpost_proto::SYNC_ALPN;
use rcgen::BasicConstraints;
use rcgen::CertificateParams;
use rcgen::CertificateSigningRequestParams;
use rcgen::DistinguishedName;
use rcgen::DnType;
use rcgen::ExtendedKeyUsagePurpose;
use rcgen::IsCa;
use rcgen::KeyPair;
use rcgen::KeyUsagePurpose;
use rcgen::SerialNumber;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::credentials::sha256_hex;
use crate::error::ControlError;

/// The CA certificate (PEM) in the data directory.
pub(crate) const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key (PEM, mode 0600).
pub(crate) const CA_KEY_FILE: &str = "ca.key.pem";
/// Control's QUIC server certificate (PEM).
pub(crate) const SERVER_CERT_FILE: &str = "control.pem";
/// Control's QUIC server key (PEM, mode 0600).
pub(crate) const SERVER_KEY_FILE: &str = "control.key.pem";

/// How long the CA is valid.
const CA_VALID_DAYS: i64 = 10 * 365;
/// How long control's server certificate is valid.
const SERVER_VALID_DAYS: i64 = 5 * 365;
/// How long a node certificate is valid.
const NODE_VALID_DAYS: i64 = 365;

/// The CA that signs control's and every node's certificate.
pub(crate) struct Ca {
    /// The CA as rcgen needs it to issue (subject and key identifier).
    issuer: rcgen::Certificate,
    key: KeyPair,
    pem: String,
    der: CertificateDer<'static>,
    sha256: String,
}

/// A certificate issued to a node.
#[derive(Debug, Clone)]
pub(crate) struct NodeCert {
    /// PEM.
    pub(crate) cert_pem: String,
    /// SHA-256 of the DER: how control recognizes the node when it connects.
    pub(crate) sha256: String,
}

impl Ca {
    /// A new CA with an ECDSA P-256 key.
    pub(crate) fn generate() -> Result<Ca, ControlError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name("Outpost control CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALID_DAYS);
        params.serial_number = Some(random_serial());
        let pem = params.self_signed(&key)?.pem();
        Ca::new(pem, key)
    }

    /// Loads the CA from the data directory.
    pub(crate) fn load(dir: &Path) -> Result<Ca, ControlError> {
        let pem = read_text(&dir.join(CA_CERT_FILE))?;
        let key = KeyPair::from_pem(&read_text(&dir.join(CA_KEY_FILE))?)?;
        Ca::new(pem, key)
    }

    /// The CA whose certificate is `pem` and whose key is `key`.
    fn new(pem: String, key: KeyPair) -> Result<Ca, ControlError> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|error| ControlError::Corrupt(format!("{CA_CERT_FILE}: {error}")))?;
        let issuer = CertificateParams::from_ca_cert_pem(&pem)?.self_signed(&key)?;
        Ok(Ca {
            issuer,
            key,
            sha256: sha256_hex(&der),
            pem,
            der,
        })
    }

    /// Writes the CA certificate and key (0600) into the data directory.
    pub(crate) fn save(&self, dir: &Path) -> Result<(), ControlError> {
        write_file(&dir.join(CA_CERT_FILE), &self.pem, false)?;
        write_file(&dir.join(CA_KEY_FILE), &self.key.serialize_pem(), true)
    }

    /// The CA certificate, PEM.
    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    /// SHA-256 of the CA certificate's DER (what join tokens pin).
    pub(crate) fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Issues control's QUIC server certificate (for [`CONTROL_SERVER_NAME`], `localhost`
    /// and 127.0.0.1) and writes it and its key (0600) into the data directory.
    pub(crate) fn issue_server_cert(&self, dir: &Path) -> Result<(), ControlError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec![
            CONTROL_SERVER_NAME.to_owned(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])?;
        params.distinguished_name = name(CONTROL_SERVER_NAME);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut params, SERVER_VALID_DAYS);
        params.serial_number = Some(random_serial());
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        write_file(&dir.join(SERVER_CERT_FILE), &cert.pem(), false)?;
        write_file(&dir.join(SERVER_KEY_FILE), &key.serialize_pem(), true)
    }

    /// Issues a node's client certificate for the key in `csr_pem`; its subject is `node_id`.
    pub(crate) fn issue_node_cert(
        &self,
        node_id: &str,
        csr_pem: &str,
    ) -> Result<NodeCert, ControlError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|error| {
            ControlError::BadRequest(format!("invalid certificate signing request: {error}"))
        })?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(node_id);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        set_validity(&mut params, NODE_VALID_DAYS);
        params.serial_number = Some(random_serial());
        let cert = params.signed_by(&csr.public_key, &self.issuer, &self.key)?;
        Ok(NodeCert {
            cert_pem: cert.pem(),
            sha256: sha256_hex(cert.der()),
        })
    }

    /// The QUIC server config: control's certificate with the CA in its chain (so a
    /// joining node can pin it), node certificates verified against the CA but optional
    /// (a node without one may only join), ALPN [`SYNC_ALPN`].
    pub(crate) fn server_config(&self, dir: &Path) -> Result<quinn::ServerConfig, ControlError> {
        let tls = |error: &dyn std::fmt::Display| ControlError::Tls(error.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).map_err(|e| tls(&e))?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| tls(&e))?;
        let server_pem = read_text(&dir.join(SERVER_CERT_FILE))?;
        let server_cert = CertificateDer::from_pem_slice(server_pem.as_bytes())
            .map_err(|error| ControlError::Corrupt(format!("{SERVER_CERT_FILE}: {error}")))?;
        let key = PrivateKeyDer::from_pem_slice(read_text(&dir.join(SERVER_KEY_FILE))?.as_bytes())
            .map_err(|error| ControlError::Corrupt(format!("{SERVER_KEY_FILE}: {error}")))?;
        let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls(&e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![server_cert, self.der.clone()], key)
            .map_err(|e| tls(&e))?;
        crypto.alpn_protocols = vec![SYNC_ALPN.to_vec()];
        let quic =
            quinn::crypto::rustls::QuicServerConfig::try_from(crypto).map_err(|e| tls(&e))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        config.transport_config(Arc::new(outpost_proto::tls::transport_config()));
        Ok(config)
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Outpost");
    name.push(DnType::CommonName, common_name);
    name
}

/// Valid from yesterday (some slack for clocks behind ours) for `days` days from today.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs() / 86_400).unwrap_or(0))
        .unwrap_or(0);
    let (year, month, day) = civil_date(today - 1);
    params.not_before = rcgen::date_time_ymd(year, month, day);
    let (year, month, day) = civil_date(today + days);
    params.not_after = rcgen::date_time_ymd(year, month, day);
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
fn civil_date(days_since_epoch: i64) -> (i32, u8, u8) {
    let z = days_since_epoch + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        i32::try_from(year).unwrap_or(i32::MAX),
        u8::try_from(month).unwrap_or(1),
        u8::try_from(day).unwrap_or(1),
    )
}

/// A random positive 128-bit serial number in minimal DER form.
fn random_serial() -> SerialNumber {
    let mut bytes = rand::random::<[u8; 16]>();
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn read_text(path: &Path) -> Result<String, ControlError> {
    fs::read_to_string(path).map_err(ControlError::io(path))
}

/// Writes a new file (refusing to replace one), private to the owner when `private`.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), ControlError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(ControlError::io(path))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(ControlError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        assert_eq!(civil_date(19_723), (2024, 1, 1));
        assert_eq!(civil_date(19_782), (2024, 2, 29));
        assert_eq!(civil_date(20_088), (2024, 12, 31));
    }

    #[test]
    fn node_certificates_come_from_csrs() -> Result<(), Box<dyn std::error::Error>> {
        let ca = Ca::generate()?;
        let key = outpost_proto::tls::new_node_key("pop-1")?;
        let cert = ca.issue_node_cert("node-0123456789abcdef", &key.csr_pem)?;
        assert!(cert.cert_pem.contains("BEGIN CERTIFICATE"));
        assert_eq!(cert.sha256.len(), 64);
        assert!(matches!(
            ca.issue_node_cert("node-x", "garbage"),
            Err(ControlError::BadRequest(_))
        ));
        // The node's client config accepts the issued certificate and its key.
        outpost_proto::tls::node_client_config(ca.pem(), &cert.cert_pem, &key.key_pem)?;
        Ok(())
    }
}
