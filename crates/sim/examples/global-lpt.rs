//! A reference schedule for `docs/BENCHMARKS.md`: global largest-first list scheduling on the
//! "4 -> 2 hosts, 160 VMs" benchmark workload, done directly on the cluster without the core.
//! It shows how close to the lower bound that workload can get.
//!
//! Run: `cargo run --release -p vmove-sim --example global-lpt`.

use vmove_core::model::{HostId, MigrationMode, MigrationRequest, PathLayout};
use vmove_sim::scenarios;

fn main() {
    for slots in [2u32, 4, 8] {
        let sc = scenarios::workload(14, 4, 2, 40, true);
        let mut spec = sc.spec.clone();
        spec.settings.max_parallel = Some(slots);
        let lb = scenarios::lower_bound(&sc.cluster, &spec);
        let mut c = sc.cluster;
        let mut todo: Vec<_> = c
            .vm_specs()
            .map(|v| {
                (
                    v.disk_bytes() + v.memory_bytes,
                    v.id.clone(),
                    v.name.clone(),
                    v.host.clone(),
                )
            })
            .collect();
        todo.sort_by_key(|x| std::cmp::Reverse(x.0));
        let dsts = [HostId::new("dst-00"), HostId::new("dst-01")];
        loop {
            // Start, largest first over ALL sources, whatever fits a free source and destination slot.
            let mut i = 0;
            while i < todo.len() {
                let (_, id, name, src) = todo[i].clone();
                if c.active_ours(&src) >= slots {
                    i += 1;
                    continue;
                }
                let Some(d) = dsts
                    .iter()
                    .filter(|d| c.active_ours(d) < slots)
                    .min_by_key(|d| c.active_ours(d))
                    .cloned()
                else {
                    break;
                };
                let req = MigrationRequest {
                    vm: id,
                    vm_name: name.into(),
                    source: src,
                    destination: d,
                    mode: MigrationMode::Live,
                    layout: PathLayout::default(),
                    attempt: 1,
                    run_id: "global-lpt".into(),
                };
                if let Err(e) = c.start_migration(&req) {
                    eprintln!("start refused: {e}");
                    return;
                }
                todo.remove(i);
            }
            match c.next_event_time() {
                Some(t) => {
                    c.advance_to(t);
                }
                None => break,
            }
        }
        println!(
            "slots {slots}: global largest-first makespan {:.0} s, lower bound {:.0} s, ratio {:.4}",
            c.now().0 as f64 / 1000.0,
            lb.0 as f64 / 1000.0,
            c.now().0 as f64 / lb.0 as f64
        );
    }
}
