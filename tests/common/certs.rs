//! Test certificates, made fresh with rcgen into a directory: a CA, server
//! certificates for 127.0.0.1 and localhost, client certificates for a
//! name. Nothing secret is committed. Also used by
//! `examples/tls_test_certs.rs`, which writes a set for the Python tests.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Whether a certificate is valid now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Now,
    /// Expired yesterday.
    Expired,
}

/// A certificate authority whose files live in `dir`.
pub struct Ca {
    pub pem: Pem,
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn dated(params: &mut CertificateParams, validity: Validity) {
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    (params.not_before, params.not_after) = match validity {
        Validity::Now => (now - day, now + 30 * day),
        Validity::Expired => (now - 30 * day, now - day),
    };
}

impl Ca {
    /// A new CA named `label`, its files `label.pem` and `label.key` in `dir`.
    pub fn new(dir: &Path, label: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("msglog test CA {label}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        dated(&mut params, Validity::Now);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = Pem {
            cert: dir.join(format!("{label}.pem")),
            key: dir.join(format!("{label}.key")),
        };
        write(&pem.cert, &cert.pem());
        write(&pem.key, &key.serialize_pem());
        Ca {
            pem,
            cert,
            key,
            dir: dir.to_path_buf(),
        }
    }

    fn issue(
        &self,
        file: &str,
        common_name: &str,
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Pem {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        dated(&mut params, validity);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let pem = Pem {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        write(&pem.cert, &cert.pem());
        write(&pem.key, &key.serialize_pem());
        pem
    }

    /// A server certificate for 127.0.0.1, ::1 and localhost.
    pub fn server(&self, file: &str, validity: Validity) -> Pem {
        let sans = vec![
            SanType::DnsName("localhost".try_into().unwrap()),
            SanType::IpAddress([127, 0, 0, 1].into()),
            SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
        ];
        self.issue(
            file,
            "localhost",
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
            validity,
        )
    }

    /// A client certificate with the common name `name`, and `uri` as a
    /// URI subject alternative name if given.
    pub fn client(&self, file: &str, name: &str, uri: Option<&str>, validity: Validity) -> Pem {
        let sans = uri
            .map(|u| SanType::URI(u.try_into().unwrap()))
            .into_iter()
            .collect();
        self.issue(
            file,
            name,
            sans,
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )
    }
}
