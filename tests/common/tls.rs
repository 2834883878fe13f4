//! A certificate authority of a test's own (made with the openssl command line): a server
//! certificate for one IP address, and client certificates, for TLS servers and clients that
//! check each other.

use crate::network::must;
use std::path::{Path, PathBuf};

pub struct TestCa {
    pub ca_cert: PathBuf,
    ca_key: PathBuf,
    dir: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

impl TestCa {
    pub fn create(dir: &Path, server_ip: &str) -> Self {
        let path = |name: &str| dir.join(name);
        let ca = Self {
            ca_cert: path("ca.pem"),
            ca_key: path("ca.key"),
            dir: dir.to_owned(),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
        };
        must(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=campeer test CA",
            "-keyout",
            &text(&ca.ca_key),
            "-out",
            &text(&ca.ca_cert),
        ]);
        ca.sign(
            "server",
            "/CN=campeer test server",
            &[
                &format!("subjectAltName=IP:{server_ip}"),
                "extendedKeyUsage=serverAuth",
            ],
        );
        ca
    }

    /// A client certificate and key signed by this CA.
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        self.sign(
            name,
            &format!("/CN={name}"),
            &["extendedKeyUsage=clientAuth"],
        )
    }

    fn sign(&self, name: &str, subject: &str, extensions: &[&str]) -> (PathBuf, PathBuf) {
        let cert = self.dir.join(format!("{name}.pem"));
        let key = self.dir.join(format!("{name}.key"));
        let request = self.dir.join(format!("{name}.csr"));
        let mut args = vec![
            "openssl".to_owned(),
            "req".into(),
            "-new".into(),
            "-newkey".into(),
            "ec".into(),
            "-pkeyopt".into(),
            "ec_paramgen_curve:P-256".into(),
            "-nodes".into(),
            "-subj".into(),
            subject.into(),
        ];
        for extension in extensions {
            args.extend(["-addext".to_owned(), (*extension).to_owned()]);
        }
        args.extend(["-keyout".into(), text(&key), "-out".into(), text(&request)]);
        must(&args.iter().map(String::as_str).collect::<Vec<_>>());
        must(&[
            "openssl",
            "x509",
            "-req",
            "-in",
            &text(&request),
            "-CA",
            &text(&self.ca_cert),
            "-CAkey",
            &text(&self.ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-copy_extensions",
            "copyall",
            "-out",
            &text(&cert),
        ]);
        (cert, key)
    }
}
