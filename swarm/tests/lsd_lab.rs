//! Local service discovery (BEP 14) in the network-namespace lab: two peers on the same LAN,
//! behind the same NAT, with no tracker, no DHT and no address for each other, find each
//! other by multicast and transfer the torrent. Needs root; skips visibly without it.

use std::time::{Duration, Instant};

use burrow_netlab::{HomeSpec, Lab, Nat};
use burrow_swarm::metainfo::{create_torrent, CreateOptions, Metainfo};
use burrow_swarm::session::{AddTorrent, Session, SessionConfig, TorrentSource};
use burrow_swarm::torrent::status::TorrentState;

fn config(state: std::path::PathBuf) -> SessionConfig {
    SessionConfig {
        listen_port: 6881,
        state_dir: state,
        dht: None,
        port_mapping: false,
        lsd: true,
        ..SessionConfig::default()
    }
}

#[test]
fn peers_on_one_lan_find_each_other_by_multicast() {
    let Some(mut lab) = Lab::new_or_skip("peers_on_one_lan_find_each_other_by_multicast") else {
        return;
    };
    let mut spec = HomeSpec::new(Nat::EndpointIndependent);
    spec.lan_hosts = 2;
    let home = lab.home("home", spec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src/set");
    std::fs::create_dir_all(&src).unwrap();
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("f.bin"), &data).unwrap();
    let bytes = create_torrent(&src, &CreateOptions::default()).unwrap();

    let (seed_dir, seed_state, seed_bytes) =
        (dir.path().join("src"), dir.path().join("s1"), bytes.clone());
    let _seeder = home.hosts[0]
        .background(move || async move {
            let mut s = Session::start(config(seed_state)).await.unwrap();
            let m = Metainfo::from_bytes(&seed_bytes).unwrap();
            s.add(AddTorrent {
                source: TorrentSource::Metainfo(Box::new(m)),
                download_dir: seed_dir,
                peers: vec![],
                seed: true,
                selection: Default::default(),
            });
            std::future::pending::<()>().await;
        })
        .unwrap();
    // Give the seeder a moment to bind its multicast socket before the leech announces.
    std::thread::sleep(Duration::from_millis(500));
    let (out, state) = (dir.path().join("out"), dir.path().join("s2"));
    let out2 = out.clone();
    let result = home.hosts[1]
        .block_on(move || async move {
            let mut s = Session::start(config(state)).await.unwrap();
            let m = Metainfo::from_bytes(&bytes).unwrap();
            let h = s.add(AddTorrent {
                source: TorrentSource::Metainfo(Box::new(m)),
                download_dir: out2,
                peers: vec![],
                seed: false,
                selection: Default::default(),
            });
            let start = Instant::now();
            let mut w = h.watch();
            loop {
                let st = w.borrow().clone();
                if st.state == TorrentState::Complete {
                    s.shutdown().await;
                    return Ok(st);
                }
                if start.elapsed() > Duration::from_secs(30) {
                    return Err(st);
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), w.changed()).await;
            }
        })
        .unwrap();
    let st = result.unwrap_or_else(|st| panic!("no peer found by LSD in 30 s: {st:?}"));
    assert_eq!(st.hash_failures, 0);
    assert_eq!(std::fs::read(out.join("set/f.bin")).unwrap(), data);
}
