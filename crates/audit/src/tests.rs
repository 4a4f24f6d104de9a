//! The audit crate on real logs (sled in a temporary directory), and against published vectors.

use super::*;
use domain::{StoredEvent, Submitted};
use store::{AppendRequest, Checkpoints, Config, EventLog, SledLog};
use tlog_tiles::Hash;

/// The signed-note example of the Go `sumdb/note` package (also in the C2SP signed-note tests): its signer key,
/// its verifier key, a text, and that text's signature.
const GO_SIGNER: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_SIGNATURE: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn our_key_handling_matches_the_published_signed_note_example() {
    let key = SigningKey::parse(GO_SIGNER).unwrap();
    assert_eq!(
        key.verifier_key(),
        GO_VERIFIER,
        "the verifier key we derive"
    );
    assert_eq!(key.origin(), "PeterNeumann");
    assert_eq!(key.key_id(), 0xc74f20a3);
    assert_eq!(
        key.sign_text(GO_TEXT),
        format!("{GO_TEXT}\n{GO_SIGNATURE}"),
        "Ed25519 is deterministic: the same signature as published"
    );
}

/// The tlog checkpoint example of Go's `sumdb/tlog` tests: size 123456789012, root = the leaf hash of
/// "hello world", whose base64 form is published there.
#[test]
fn checkpoints_have_the_c2sp_form() {
    let key = SigningKey::parse(GO_SIGNER).unwrap();
    let root = tlog_tiles::record_hash(b"hello world");
    let note = key.sign_checkpoint(123456789012, root);
    let text = "PeterNeumann\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n";
    assert!(
        note.starts_with(&format!("{text}\n— PeterNeumann ")),
        "{note}"
    );
    let opened = open_checkpoint(&note, &VerifierKey::parse(GO_VERIFIER).unwrap()).unwrap();
    assert_eq!(
        opened,
        SignedCheckpoint {
            origin: "PeterNeumann".into(),
            size: 123456789012,
            root
        }
    );
    // Another key of the same name is not this key.
    let (other, _) = SigningKey::generate("PeterNeumann").unwrap();
    let err =
        open_checkpoint(&note, &VerifierKey::parse(other.verifier_key()).unwrap()).unwrap_err();
    assert!(err.0.contains("not signed by the key"), "{err}");
}

fn hex(h: &str) -> Hash {
    let bytes: Vec<u8> = (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect();
    Hash(bytes.try_into().unwrap())
}

/// Our consistency check, fed the Certificate Transparency reference tree's published roots and proofs, signed
/// as checkpoints: it accepts them, and refuses a rewritten old root, a proof of other sizes, and a fork.
#[test]
fn consistency_checks_the_published_certificate_transparency_proofs() {
    let (key, _) = SigningKey::generate("example.org/ct-reference").unwrap();
    let verifier = VerifierKey::parse(key.verifier_key()).unwrap();
    let signed = |size: u64, root: &str| {
        open_checkpoint(&key.sign_checkpoint(size, hex(root)), &verifier).unwrap()
    };
    let root6 = "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef";
    let root2 = "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125";
    let root8 = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328";
    let proof_6_8 = ConsistencyProof {
        from: 6,
        to: 8,
        proof: [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ]
        .iter()
        .map(|h| hex(h))
        .collect(),
    };
    let (old, new) = (signed(6, root6), signed(8, root8));
    verify_consistency(&old, &new, Some(&proof_6_8)).unwrap();
    // A log whose first six leaves were rewritten has another root at size 6.
    let forged = signed(6, root2);
    let err = verify_consistency(&forged, &new, Some(&proof_6_8)).unwrap_err();
    assert!(err.0.contains("rewritten"), "{err}");
    let err = verify_consistency(&new, &old, Some(&proof_6_8)).unwrap_err();
    assert!(err.0.contains("oldest first"), "{err}");
    let err = verify_consistency(&signed(5, root6), &new, Some(&proof_6_8)).unwrap_err();
    assert!(
        err.0.contains("the proof is from size 6 to size 8"),
        "{err}"
    );
    let err = verify_consistency(&old, &new, None).unwrap_err();
    assert!(err.0.contains("no consistency proof"), "{err}");
    let err = verify_consistency(&signed(8, root6), &new, None).unwrap_err();
    assert!(err.0.contains("forked"), "{err}");
    verify_consistency(&new, &new, None).unwrap();
}

/// A log in `dir` holding the generated province `seed`, each event passed through `change` first.
fn generated_log(dir: &std::path::Path, seed: u64, change: impl Fn(&mut StoredEvent)) -> SledLog {
    let log = SledLog::open(Config::new(dir)).unwrap();
    let config = generator::Config::new(
        seed,
        60,
        "2019-Q1".parse().unwrap(),
        "2019-Q2".parse().unwrap(),
    );
    let mut events: Vec<Submitted> = Vec::new();
    for mut e in generator::Generator::new(&config) {
        change(&mut e);
        events.push(Submitted::from(e));
    }
    for chunk in events.chunks(100) {
        log.append_blocking(AppendRequest {
            events: chunk.to_vec(),
            source: "test".into(),
        })
        .unwrap();
    }
    log
}

/// The dossier with the most events.
fn longest_dossier(log: &SledLog) -> String {
    let mut best = (0, String::new());
    for e in log.read_after(0, 100_000).unwrap() {
        if let Some(d) = &e.event.dossier {
            let n = log.stream(d.as_str()).unwrap().len();
            if n > best.0 {
                best = (n, d.to_string());
            }
        }
    }
    assert!(
        best.0 >= 4,
        "the generator makes dossiers of several events"
    );
    best.1
}

/// A generated log, a fresh key, and the bundle of the log's longest dossier.
struct Fixture {
    _dir: tempfile::TempDir,
    log: SledLog,
    verifier: VerifierKey,
    notary: Notary,
    dossier: String,
    bundle: Bundle,
}

fn fixture(seed: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), seed, |_| {});
    let (key, _) = SigningKey::generate("test.invalid/bundles").unwrap();
    let verifier = VerifierKey::parse(key.verifier_key()).unwrap();
    let notary = Notary::new(key);
    let dossier = longest_dossier(&log);
    let bundle = notary
        .bundle(&log, &dossier, chrono::Utc::now())
        .unwrap()
        .unwrap();
    Fixture {
        _dir: dir,
        log,
        verifier,
        notary,
        dossier,
        bundle,
    }
}

#[test]
fn a_bundle_verifies_and_every_changed_byte_is_caught() {
    let Fixture {
        log,
        verifier,
        dossier,
        bundle,
        ..
    } = fixture(5);
    let bytes = serde_json::to_vec(&bundle).unwrap();
    let verified = verify_bundle(&bytes, &verifier).unwrap();
    assert_eq!(verified.dossier, dossier);
    assert_eq!(verified.events, log.stream(&dossier).unwrap());
    assert_eq!(verified.checkpoint.size, log.head().size);

    // Every byte, changed to another value (a seeded choice per offset), makes the bundle fail. Compact JSON has
    // no insignificant whitespace, so no single-byte change leaves its meaning intact.
    let mut state = 0x9e3779b97f4a7c15u64;
    for i in 0..bytes.len() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut changed = bytes.clone();
        changed[i] ^= (state % 255 + 1) as u8;
        if let Ok(v) = verify_bundle(&changed, &verifier) {
            panic!(
                "byte {i} ({:?} → {:?}) changed, yet the bundle verified: {:?}",
                bytes[i] as char, changed[i] as char, v.dossier
            );
        }
    }
}

#[test]
fn a_bundle_missing_reordered_or_foreign_events_is_refused() {
    let Fixture {
        log,
        verifier,
        dossier,
        bundle,
        ..
    } = fixture(6);
    let check = |b: &Bundle| verify_bundle(&serde_json::to_vec(b).unwrap(), &verifier).map(|_| ());

    let mut gap = bundle.clone();
    gap.events.remove(1);
    assert!(check(&gap).unwrap_err().0.contains("gap: version 2"));

    let mut swapped = bundle.clone();
    swapped.events.swap(0, 1);
    assert!(check(&swapped).is_err());

    let mut none = bundle.clone();
    none.events.clear();
    assert!(check(&none).unwrap_err().0.contains("no events"));

    // An event of another dossier, with a valid proof of its own, is not this dossier's.
    let other = log
        .read_after(0, 10_000)
        .unwrap()
        .into_iter()
        .find(|e| {
            e.event
                .dossier
                .as_ref()
                .is_some_and(|d| d.as_str() != dossier)
        })
        .unwrap();
    let foreign = Bundle::build(
        &log,
        other.event.dossier.as_ref().unwrap().as_str(),
        &log.latest_checkpoint().unwrap().unwrap(),
    )
    .unwrap()
    .unwrap();
    let mut mixed = bundle.clone();
    mixed.events[0] = foreign.events[0].clone();
    assert!(check(&mixed).unwrap_err().0.contains("belongs to"));

    // The same events against the checkpoint of another key.
    let (stranger, _) = SigningKey::generate("test.invalid/trails").unwrap();
    let mut resigned = bundle.clone();
    resigned.checkpoint = stranger.sign_checkpoint(log.head().size, log.head().root);
    assert!(check(&resigned)
        .unwrap_err()
        .0
        .contains("not signed by the key"));
}

#[test]
fn an_old_bundle_still_verifies_and_its_checkpoint_links_to_the_new_head() {
    let Fixture {
        _dir: dir,
        log,
        verifier,
        notary,
        bundle: old,
        ..
    } = fixture(7);
    let old_size = log.head().size;
    // More events arrive: a second province's worth, under other dossier codes.
    let more = generated_log(&dir.path().join("more"), 8, |_| {});
    let extra: Vec<Submitted> = more
        .read_after(0, 100_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.event.dossier.is_some())
        .map(|e| Submitted::from(e.event))
        .filter(|s| {
            log.stream(s.event.stream_key().as_ref())
                .unwrap()
                .is_empty()
        })
        .collect();
    let mut taken = 0;
    for s in extra {
        // Only the first event of each dossier that is new here; reference data is shared.
        if log
            .append_blocking(AppendRequest {
                events: vec![s],
                source: "later".into(),
            })
            .is_ok()
        {
            taken += 1;
        }
    }
    assert!(taken > 10);
    let new = notary.checkpoint_head(&log, chrono::Utc::now()).unwrap();
    assert!(new.size > old_size);
    let verified_old = verify_bundle(&serde_json::to_vec(&old).unwrap(), &verifier).unwrap();
    assert_eq!(verified_old.checkpoint.size, old_size);
    let proof = ConsistencyProof {
        from: old_size,
        to: new.size,
        proof: log.prove_consistency(old_size, new.size).unwrap(),
    };
    let new_checkpoint = open_checkpoint(&new.note, &verifier).unwrap();
    verify_consistency(&verified_old.checkpoint, &new_checkpoint, Some(&proof)).unwrap();
}

#[test]
fn a_rewritten_log_signed_with_the_same_key_fails_consistency() {
    let dir = tempfile::tempdir().unwrap();
    let secret = SigningKey::generate("test.invalid/fork").unwrap().1;
    let notary = Notary::new(SigningKey::parse(&secret).unwrap());
    let verifier = VerifierKey::parse(notary.key().verifier_key()).unwrap();
    let honest = generated_log(&dir.path().join("honest"), 9, |_| {});
    let old = open_checkpoint(
        &notary
            .checkpoint_head(&honest, chrono::Utc::now())
            .unwrap()
            .note,
        &verifier,
    )
    .unwrap();
    // The same history, but for the source of one early event: a rewrite, then signed with the same key.
    let forged = generated_log(&dir.path().join("forged"), 9, |e| {
        if e.position == 5 {
            e.source = "forger".into();
        }
    });
    assert_eq!(forged.head().size, honest.head().size);
    let new_note = Notary::new(SigningKey::parse(&secret).unwrap())
        .checkpoint_head(&forged, chrono::Utc::now())
        .unwrap();
    let new = open_checkpoint(&new_note.note, &verifier).unwrap();
    let err = verify_consistency(&old, &new, None).unwrap_err();
    assert!(err.0.contains("forked"), "{err}");
    // Against an older honest checkpoint, the forger's own consistency proof does not link either.
    let honest_old = open_checkpoint(
        &notary
            .key()
            .sign_checkpoint(10, honest.root_at(10).unwrap()),
        &verifier,
    )
    .unwrap();
    let proof = ConsistencyProof {
        from: 10,
        to: new.size,
        proof: forged.prove_consistency(10, new.size).unwrap(),
    };
    let err = verify_consistency(&honest_old, &new, Some(&proof)).unwrap_err();
    assert!(err.0.contains("rewritten"), "{err}");
}

#[test]
fn the_key_file_is_private_durable_and_read_back() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("audit-signing.key");
    let (made, created) =
        SigningKey::load_or_create(&path, Some("motcua.example.vn/casetrail")).unwrap();
    assert!(created);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (again, created) = SigningKey::load_or_create(&path, Some("ignored.example")).unwrap();
    assert!(!created);
    assert_eq!(again.verifier_key(), made.verifier_key());
    assert!(made
        .verifier_key()
        .starts_with("motcua.example.vn/casetrail+"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = SigningKey::load(&path).err().unwrap();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    assert!(SigningKey::load_or_create(&dir.path().join("k2"), Some("has space")).is_err());
}
