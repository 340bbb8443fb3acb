//! A real 3-master Redis Cluster on free ports (`redis-server --cluster-enabled yes` and
//! `redis-cli --cluster create`), killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ports::free_port;
use super::scratch::ScratchDir;

pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Child>,
    dir: ScratchDir,
}

impl RedisCluster {
    pub fn start() -> Self {
        let dir = ScratchDir::new("cluster");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let children = ports
            .iter()
            .map(|port| {
                let node_dir = dir.path().join(port.to_string());
                std::fs::create_dir_all(&node_dir).unwrap();
                Command::new("redis-server")
                    .args([
                        "--port",
                        &port.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        // The bus defaults to the port + 10000, past 65535 for a free port
                        // above 55535: it gets a free port of its own.
                        "--cluster-port",
                        &free_port().to_string(),
                    ])
                    .args([
                        "--cluster-config-file",
                        "nodes.conf",
                        "--save",
                        "",
                        // As production runs it (README: Durability), so its files can be read.
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "everysec",
                    ])
                    .arg("--dir")
                    .arg(&node_dir)
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("redis-server")
            })
            .collect();
        let cluster = Self {
            ports,
            children,
            dir,
        };
        for port in &cluster.ports {
            cluster.wait(*port, "PING", "PONG");
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(status.success(), "redis-cli --cluster create failed");
        for port in &cluster.ports {
            cluster.wait(*port, "CLUSTER INFO", "cluster_state:ok");
        }
        cluster
    }

    fn wait(&self, port: u16, command: &str, expect: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let output = Command::new("redis-cli")
                .args(["-p", &port.to_string()])
                .args(command.split(' '))
                .output();
            if output.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(expect)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster node {port}: no {expect}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where the nodes keep their files (one directory each).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn seeds(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
