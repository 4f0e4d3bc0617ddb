use super::*;

/// Starts `topk --all` on an `.npy` streamed through stdin, sends the header and the first of
/// two slabs, and waits until the output's temporary exists (the second slab never comes).
fn stalled_topk(dir: &Path) -> (std::process::Child, std::process::ChildStdin) {
    use std::io::Write;
    let mut child = bin()
        .args([
            "topk",
            "--attn",
            "-",
            "--all",
            "--row-group-size",
            "4",
            "-o",
        ])
        .arg(dir.join("out.parquet"))
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut bytes = ingest::npy::header_bytes("<f4", &[1, 1, 2, 4, 4]);
    bytes.extend((0..16).flat_map(|i| (i as f32 / 120.0).to_le_bytes()));
    stdin.write_all(&bytes).unwrap();
    stdin.flush().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while temporaries(dir).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no temporary appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (child, stdin)
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out.parquet.attnframes-"))
        .collect()
}

fn send(signal: &str, child: &std::process::Child) {
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn interrupted_runs_leave_no_output_and_no_temporary() {
    use std::os::unix::process::ExitStatusExt;
    let d = tempfile::tempdir().unwrap();
    // Ctrl-C: the temporary is removed and the exit status is 130.
    let (mut child, _stdin) = stalled_topk(d.path());
    send("-INT", &child);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(
        std::fs::read_dir(d.path()).unwrap().next().is_none(),
        "nothing is left"
    );
    // SIGTERM: the same, with 143.
    let (mut child, _stdin) = stalled_topk(d.path());
    send("-TERM", &child);
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert!(std::fs::read_dir(d.path()).unwrap().next().is_none());
    // SIGKILL cannot be caught: no output appears, the temporary stays, and the next run
    // towards the same target sweeps it.
    let (mut child, stdin) = stalled_topk(d.path());
    send("-KILL", &child);
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    drop(stdin);
    assert!(!d.path().join("out.parquet").exists());
    assert_eq!(temporaries(d.path()).len(), 1);
    let o = run(&[
        "topk",
        "--attn",
        fixture("minilm/attentions.npy").to_str().unwrap(),
        "-k",
        "2",
        "-o",
        d.path().join("out.parquet").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        temporaries(d.path()).is_empty(),
        "the stale temporary is swept"
    );
    // A failed run never truncates a good output: the old file stays byte for byte.
    let good = std::fs::read(d.path().join("out.parquet")).unwrap();
    let o = run(&[
        "topk",
        "--attn",
        fixture("bad/truncated.npy").to_str().unwrap(),
        "-o",
        d.path().join("out.parquet").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read(d.path().join("out.parquet")).unwrap(), good);
}

#[test]
fn full_disk_and_closed_pipe() {
    use std::io::{BufRead, BufReader};
    let d = tempfile::tempdir().unwrap();
    let attn = fixture("minilm/attentions.npy");
    // A file-size limit of 20 blocks: writes fail with EFBIG (SIGXFSZ ignored, as a shell's
    // `trap '' XFSZ` leaves it for the exec'd program).
    let out = d.path().join("big.parquet");
    let o = Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 20; trap '' XFSZ; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_attnframes"))
        .args([
            "topk",
            "--attn",
            attn.to_str().unwrap(),
            "--all",
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: ")
            && err.contains("big.parquet")
            && err.trim_end().lines().count() == 1,
        "{err}"
    );
    assert!(
        std::fs::read_dir(d.path()).unwrap().next().is_none(),
        "no output, no temporary"
    );
    // Reading one line of a CSV stream and closing the pipe: a quiet exit 0, as ripgrep does.
    let mut child = bin()
        .args([
            "topk",
            "--attn",
            attn.to_str().unwrap(),
            "--all",
            "-o",
            "-",
            "--format",
            "csv",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("batch,layer,head"));
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    // The same for a byte output: `dense -o -` (1 MB, more than a pipe holds) read for a few
    // bytes. Longformer input: S = 256, one global slot, window w = 16.
    let (s, w) = (256usize, 16usize);
    let sliding = d.path().join("sliding.npy");
    let global = d.path().join("global.npy");
    write_npy(
        &sliding,
        &[1, 1, 4, s, w + 2],
        &vec![1.0 / (w + 2) as f32; 4 * s * (w + 2)],
    );
    write_npy(&global, &[1, 1, 4, s, 1], &vec![1.0 / s as f32; 4 * s]);
    let mut child = bin()
        .args([
            "dense",
            "--attn",
            sliding.to_str().unwrap(),
            "--global-attn",
            global.to_str().unwrap(),
            "-o",
            "-",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut magic = [0u8; 6];
    std::io::Read::read_exact(&mut child.stdout.take().unwrap(), &mut magic).unwrap();
    assert_eq!(&magic, b"\x93NUMPY");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn hostile_header_sizes_are_refused_before_allocating() {
    let d = tempfile::tempdir().unwrap();
    for (name, shape) in [
        ("overflow.npy", "(4294967296, 4294967296, 4294967296)"),
        ("huge.npy", "(1, 1, 12, 1000000, 1000000)"),
    ] {
        let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        let mut h = header.into_bytes();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((h.len() as u16).to_le_bytes());
        bytes.extend(h);
        bytes.extend([0u8; 64]);
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = d.path().join("o.parquet");
        for cmd in [
            vec!["topk"],
            vec!["melt", "--axes", "a,b,c,d,e"],
            vec!["headstats"],
        ] {
            let mut args: Vec<&str> = cmd.clone();
            args.extend(["--attn", p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
            if shape.matches(',').count() == 2 && cmd[0] == "melt" {
                args[2] = "a,b,c";
            }
            let o = run(&args);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{cmd:?} {name}: {err}");
            assert!(err.starts_with("error: ") && err.contains(name), "{err}");
            assert!(
                err.chars().any(|c| c.is_ascii_digit()),
                "the numbers are in the message: {err}"
            );
            assert!(!d.path().join("o.parquet").exists());
        }
    }
}

#[test]
fn every_command_writes_the_same_bytes_for_any_thread_count() {
    let d = tempfile::tempdir().unwrap();
    let (a, m, t) = (
        fixture("minilm/attentions.npy"),
        fixture("minilm/attention_mask.npy"),
        fixture("minilm/tokens.json"),
    );
    let (a, m, t) = (
        a.to_str().unwrap(),
        m.to_str().unwrap(),
        t.to_str().unwrap(),
    );
    let attr = fixture("minilm/attributions.npy");
    let run_b = fixture("spacetime/run_b.npy");
    let run_a = fixture("spacetime/run_a.npy");
    let base = |cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        v.extend(["--attn", a, "--attention-mask", m, "--tokens", t].map(String::from));
        v
    };
    let commands: Vec<Vec<String>> = vec![
        base(&["topk", "-k", "5"]),
        base(&["topk", "--all", "--words"]),
        base(&["received", "--normalize", "minmax", "--reduce", "heads"]),
        [
            base(&["similarity"]),
            vec!["--attributions".into(), attr.display().to_string()],
        ]
        .concat(),
        base(&["headstats"]),
        base(&["rollout", "-k", "3"]),
        base(&[
            "cluster",
            "--layer",
            "3",
            "--head",
            "2",
            "--batch",
            "2",
            "--rows",
            "both",
            "--k-range",
            "2-4",
        ]),
        vec![
            "melt".into(),
            "--attn".into(),
            a.into(),
            "--axes".into(),
            "layer,batch,head,query_position,position".into(),
        ],
        vec![
            "compare".into(),
            "--attn".into(),
            run_a.display().to_string(),
            "--attn-b".into(),
            run_b.display().to_string(),
            "--channels-a".into(),
            "SP1,SP2,TO1,TO2,TO'1,TO'2".into(),
            "--channels-b".into(),
            "SP2,TO1,TO2,TO'1,TO'2,SP1".into(),
            "--block".into(),
            "6".into(),
        ],
    ];
    for cmd in &commands {
        for ext in ["parquet", "csv", "arrow"] {
            let outputs: Vec<Vec<u8>> = ["1", "2", "8"]
                .iter()
                .map(|threads| {
                    let out = d.path().join(format!("o{threads}.{ext}"));
                    let o = bin()
                        .arg("--threads")
                        .arg(threads)
                        .args(cmd)
                        .arg("-o")
                        .arg(&out)
                        .output()
                        .unwrap();
                    assert!(o.status.success(), "{cmd:?}: {}", stderr(&o));
                    std::fs::read(&out).unwrap()
                })
                .collect();
            assert!(
                outputs.windows(2).all(|w| w[0] == w[1]),
                "{cmd:?} .{ext} differs between 1, 2 and 8 threads"
            );
        }
    }
}

#[test]
#[ignore = "soak: 1,000 sequential runs and 50 concurrent ones (about a minute)"]
fn soak_sequential_and_concurrent_runs() {
    let d = tempfile::tempdir().unwrap();
    let a = fixture("minilm/attentions.npy");
    let args = |out: &Path| -> Vec<String> {
        [
            "topk",
            "--attn",
            a.to_str().unwrap(),
            "-k",
            "3",
            "-o",
            out.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let reference = d.path().join("reference.parquet");
    assert!(bin().args(args(&reference)).status().unwrap().success());
    let want = std::fs::read(&reference).unwrap();
    for i in 0..1000 {
        let out = d.path().join("seq.parquet");
        let o = bin().args(args(&out)).output().unwrap();
        assert!(o.status.success(), "run {i}: {}", stderr(&o));
        assert_eq!(std::fs::read(&out).unwrap(), want, "run {i}");
    }
    let children: Vec<_> = (0..50)
        .map(|i| {
            bin()
                .args(args(&d.path().join(format!("c{i}.parquet"))))
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    for i in 0..50 {
        assert_eq!(
            std::fs::read(d.path().join(format!("c{i}.parquet"))).unwrap(),
            want
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
