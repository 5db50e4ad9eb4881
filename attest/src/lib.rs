//! Attestation evidence: SEV-SNP reports, RA-TLS extension, launch-measurement calculators, verification
