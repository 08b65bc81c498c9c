//! Replays the `config_yaml` fuzz corpus: no input may panic the config loader.

use kepler_bin::config::{Config, Flags};

#[test]
fn config_corpus_never_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/config_yaml");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = Config::build(&Flags::default(), Some(("corpus.yaml", text)), None, || {
                "n".into()
            });
        }
        n += 1;
    }
    assert!(n >= 5, "corpus too small: {n}");
}
