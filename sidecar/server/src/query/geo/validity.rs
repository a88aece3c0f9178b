//! Whether a GeoJSON polygon is valid on the sphere, as MongoDB's S2
//! checks it for a 2dsphere index and a spherical query: no ring crosses
//! itself or another ring ("Edges i and j cross"), no vertex repeats
//! ("Duplicate vertices"), holes lie inside the shell.
//!
//! Bounded: edges are bucketed in a grid of cubes over the unit sphere
//! (a cube about four mean edge lengths wide; an edge goes in every cube
//! its bounding box touches) and only edges sharing a cube are tested, so
//! a ring of n edges costs O(n) for ordinary shapes. A shape that defeats
//! the grid (very long edges, or many edges piled in one place) stops at
//! [`MAX_CELL_ENTRIES`] bucket entries or [`MAX_PAIR_TESTS`] tests and is
//! refused by name rather than checked in quadratic time.

use std::collections::HashSet;

use super::geometry::{Polygon, Pt};
use super::sphere::{Loop, V3, angle, crosses};

/// Most bucket entries (edge × cube) one polygon may take.
pub const MAX_CELL_ENTRIES: usize = 8_000_000;
/// Most edge pairs one polygon's check may test.
pub const MAX_PAIR_TESTS: usize = 64_000_000;
/// An edge whose bounding box spans more cubes than this is tested
/// against every edge rather than bucketed.
const LONG_EDGE_CELLS: usize = 64;

struct Edge {
    a: V3,
    b: V3,
    ring: u32,
    index: u32,
}

/// MongoDB's message for a polygon S2 refuses, or `Ok`.
pub fn check_polygon(p: &Polygon) -> Result<(), String> {
    for (r, ring) in p.rings.iter().enumerate() {
        duplicates(ring).map_err(|e| format!("Loop is not valid: {} {e}", ring_text(p, r)))?;
    }
    let mut edges = Vec::new();
    for (r, ring) in p.rings.iter().enumerate() {
        for (i, w) in ring.windows(2).enumerate() {
            edges.push(Edge {
                a: V3::from_lng_lat(w[0]),
                b: V3::from_lng_lat(w[1]),
                ring: r as u32,
                index: i as u32,
            });
        }
    }
    if let Some((x, y)) = first_crossing(&edges)? {
        let (ex, ey) = (&edges[x], &edges[y]);
        return Err(if ex.ring == ey.ring {
            format!(
                "Loop is not valid: {} Edges {} and {} cross.",
                ring_text(p, ex.ring as usize),
                ex.index,
                ey.index
            )
        } else {
            format!(
                "Secondary loops not contained by first exterior loop - secondary loops must be holes: {}",
                ring_text(p, ex.ring.max(ey.ring) as usize)
            )
        });
    }
    // No ring crosses another: a hole is inside the shell when one of its
    // vertices is.
    let Some(shell) = p.rings.first().map(|r| Loop::new(r)) else {
        return Ok(());
    };
    for (r, hole) in p.rings.iter().enumerate().skip(1) {
        let inside = hole
            .iter()
            .any(|v| shell.contains_strict(V3::from_lng_lat(*v)));
        if !inside {
            return Err(format!(
                "Secondary loops not contained by first exterior loop - secondary loops must be holes: {}",
                ring_text(p, r)
            ));
        }
    }
    Ok(())
}

fn ring_text(p: &Polygon, r: usize) -> String {
    let ring = &p.rings[r];
    let shown: Vec<String> = ring
        .iter()
        .take(8)
        .map(|v| format!("[{}, {}]", v.x, v.y))
        .collect();
    let more = if ring.len() > 8 { ", ..." } else { "" };
    format!("[ {}{more} ]", shown.join(", "))
}

/// Two vertices of a ring at the same place (other than its closing one;
/// all positions on a pole are one place).
fn duplicates(ring: &[Pt]) -> Result<(), String> {
    let mut seen = HashSet::with_capacity(ring.len());
    for (i, p) in ring[..ring.len().saturating_sub(1)].iter().enumerate() {
        let v = V3::from_lng_lat(*p);
        let key = v.0.map(|c| (c * 1e12).round() as i64);
        if !seen.insert(key) {
            let j = ring
                .iter()
                .position(|q| V3::from_lng_lat(*q).0.map(|c| (c * 1e12).round() as i64) == key)
                .unwrap_or(0);
            return Err(format!("Duplicate vertices: {j} and {i}"));
        }
    }
    Ok(())
}

fn too_complex() -> String {
    format!(
        "Loop is not valid: too many edges near one another to check for crossings within Argon's bound ({MAX_PAIR_TESTS} edge pairs)"
    )
}

/// The first pair of edges (by index) that cross, through the grid.
fn first_crossing(edges: &[Edge]) -> Result<Option<(usize, usize)>, String> {
    if edges.len() < 3 {
        return Ok(None);
    }
    let mean = edges.iter().map(|e| angle(e.a, e.b)).sum::<f64>() / edges.len() as f64;
    let cell = (4.0 * mean).clamp(1e-9, 0.5);
    let mut entries: Vec<(u64, u32)> = Vec::with_capacity(edges.len() * 2);
    // Edges spanning many cubes (a long closing edge of a detailed
    // coastline) are tested against every edge instead.
    let mut long: Vec<usize> = Vec::new();
    for (i, e) in edges.iter().enumerate() {
        let mid = e.a.plus(e.b).normalize();
        let half = angle(e.a, e.b) / 2.0 + 1e-12;
        let lo = mid.0.map(|c| ((c - half) / cell).floor() as i64);
        let hi = mid.0.map(|c| ((c + half) / cell).floor() as i64);
        let count = (0..3)
            .map(|k| (hi[k] - lo[k] + 1).max(1) as usize)
            .fold(1usize, usize::saturating_mul);
        if count > LONG_EDGE_CELLS {
            long.push(i);
            continue;
        }
        if entries.len().saturating_add(count) > MAX_CELL_ENTRIES {
            return Err(too_complex());
        }
        for x in lo[0]..=hi[0] {
            for y in lo[1]..=hi[1] {
                for z in lo[2]..=hi[2] {
                    entries.push((cell_key(x, y, z), i as u32));
                }
            }
        }
    }
    if long.len().saturating_mul(edges.len()) > MAX_PAIR_TESTS {
        return Err(too_complex());
    }
    let mut tests = long.len() * edges.len();
    let mut found: Option<(usize, usize)> = None;
    let check = |i: usize, j: usize, found: &mut Option<(usize, usize)>| {
        let (x, y) = (&edges[i], &edges[j]);
        let shared = x.a == y.a || x.a == y.b || x.b == y.a || x.b == y.b;
        if i != j && !shared && crosses(x.a, x.b, y.a, y.b) {
            let pair = (i.min(j), i.max(j));
            *found = Some(found.map_or(pair, |f| f.min(pair)));
        }
    };
    for &i in &long {
        for j in 0..edges.len() {
            check(i, j, &mut found);
        }
    }
    entries.sort_unstable();
    let mut start = 0;
    while start < entries.len() {
        let key = entries[start].0;
        let end = entries[start..]
            .iter()
            .position(|(k, _)| *k != key)
            .map_or(entries.len(), |n| start + n);
        let bucket = &entries[start..end];
        for (n, (_, i)) in bucket.iter().enumerate() {
            for (_, j) in &bucket[n + 1..] {
                tests += 1;
                if tests > MAX_PAIR_TESTS {
                    return Err(too_complex());
                }
                check(*i as usize, *j as usize, &mut found);
            }
        }
        start = end;
    }
    Ok(found)
}

/// Packs a cube's coordinates into one key, 21 bits each: cubes far apart
/// may alias to one key, which only adds candidate pairs, never loses one.
fn cell_key(x: i64, y: i64, z: i64) -> u64 {
    let part = |c: i64| (c.wrapping_add(1 << 20) as u64) & 0x1F_FFFF;
    (part(x) << 42) | (part(y) << 21) | part(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poly(rings: &[&[(f64, f64)]]) -> Polygon {
        Polygon {
            rings: rings
                .iter()
                .map(|r| {
                    let mut v: Vec<Pt> = r.iter().map(|(x, y)| Pt { x: *x, y: *y }).collect();
                    v.push(v[0]);
                    v
                })
                .collect(),
        }
    }

    #[test]
    fn self_crossing_rings_and_stray_holes_are_refused() {
        assert!(
            check_polygon(&poly(&[&[
                (0.0, 0.0),
                (10.0, 0.0),
                (10.0, 10.0),
                (0.0, 10.0)
            ]]))
            .is_ok()
        );
        // A bow tie: edges 0 and 2 cross.
        let e = check_polygon(&poly(&[&[
            (0.0, 0.0),
            (10.0, 10.0),
            (10.0, 0.0),
            (0.0, 10.0),
        ]]))
        .unwrap_err();
        assert!(e.contains("Edges 0 and 2 cross"), "{e}");
        let e = check_polygon(&poly(&[&[
            (0.0, 0.0),
            (5.0, 0.0),
            (10.0, 0.0),
            (5.0, 0.0),
            (5.0, 5.0),
        ]]))
        .unwrap_err();
        assert!(e.contains("Duplicate vertices"), "{e}");
        let holed = poly(&[
            &[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)],
            &[(2.0, 2.0), (4.0, 2.0), (4.0, 4.0), (2.0, 4.0)],
        ]);
        assert!(check_polygon(&holed).is_ok());
        let outside = poly(&[
            &[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)],
            &[(20.0, 2.0), (24.0, 2.0), (24.0, 4.0), (20.0, 4.0)],
        ]);
        assert!(
            check_polygon(&outside)
                .unwrap_err()
                .starts_with("Secondary loops")
        );
        let crossing = poly(&[
            &[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)],
            &[(8.0, 2.0), (14.0, 2.0), (14.0, 4.0), (8.0, 4.0)],
        ]);
        assert!(
            check_polygon(&crossing)
                .unwrap_err()
                .starts_with("Secondary loops")
        );
    }

    #[test]
    fn a_ring_of_many_vertices_is_checked_in_linear_time() {
        // 1,000,000 vertices (more than a 16 MiB message can carry) on a
        // circle round the north pole (every edge at the same latitude: a
        // sweep by latitude would be quadratic).
        let n = 1_000_000;
        let ring: Vec<(f64, f64)> = (0..n)
            .map(|i| (-180.0 + 360.0 * i as f64 / n as f64, 60.0))
            .collect();
        // Pairwise that is 5e11 tests, far past the bound: the grid keeps
        // it linear and the ring is accepted.
        assert!(check_polygon(&poly(&[&ring])).is_ok());
    }

    #[test]
    fn dense_nearly_collinear_edges_are_not_taken_for_crossings() {
        // 200,000 vertices on a small ellipse (edges of about 5 m): the
        // determinants of neighbouring edges are near 1e-17, below the
        // rounding of a · (b × c); computed from differences they keep
        // their sign.
        let n = 200_000;
        let ring: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                let t = std::f64::consts::TAU * i as f64 / n as f64;
                (-73.9857 + 2.0 * t.cos(), 40.7484 + 1.5 * t.sin())
            })
            .collect();
        assert!(check_polygon(&poly(&[&ring])).is_ok());
    }

    #[test]
    fn a_detailed_ring_with_one_long_edge_is_accepted() {
        // 100,000 short edges along a wavy coast and one long closing edge.
        let n = 100_000;
        let mut ring: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                let x = -10.0 + 20.0 * i as f64 / n as f64;
                (x, 0.01 * (x * 50.0).sin())
            })
            .collect();
        ring.push((10.0, 5.0));
        ring.push((-10.0, 5.0));
        assert!(check_polygon(&poly(&[&ring])).is_ok());
    }

    #[test]
    fn long_edges_piled_together_stop_at_the_bound() {
        // A star of long edges all through one region: refused by name,
        // not tested pair by pair without end.
        let n = 20_000;
        let ring: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                let t = i as f64 / n as f64;
                if i % 2 == 0 {
                    (-170.0 + 340.0 * t, -80.0)
                } else {
                    (170.0 - 340.0 * t, 80.0)
                }
            })
            .collect();
        let e = check_polygon(&poly(&[&ring])).unwrap_err();
        assert!(e.contains("cross") || e.contains("Argon's bound"), "{e}");
    }
}
