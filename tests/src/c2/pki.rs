//! The test CA and the server certificate it issues.

use super::*;

/// The test CA and the server certificate it issued.
pub(super) struct TestPki {
    pub(super) ca_pem: String,
    server_certificate: rustls_pki_types::CertificateDer<'static>,
    server_key: rustls_pki_types::PrivateKeyDer<'static>,
}

impl TestPki {
    pub(super) fn generate() -> Result<Self> {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose, SanType,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Keyfill C2 test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut server_params = CertificateParams::new(vec!["localhost".to_owned()])?;
        server_params.subject_alt_names.push(SanType::IpAddress(Ipv4Addr::LOCALHOST.into()));
        server_params.distinguished_name.push(DnType::CommonName, "Keyfill C2 test server");
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_certificate = server_params.signed_by(&server_key, &*ca)?;

        Ok(TestPki {
            ca_pem: ca.pem(),
            server_certificate: server_certificate.der().clone(),
            server_key: rustls_pki_types::PrivatePkcs8KeyDer::from(server_key.serialize_der()).into(),
        })
    }

    pub(super) fn acceptor(self) -> Result<TlsAcceptor> {
        // The ring provider explicitly: a process-wide default may be absent or be another one.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.server_certificate], self.server_key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}
