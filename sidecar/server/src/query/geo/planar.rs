//! Flat geometry (a 2d index's and the legacy shapes `$box`, `$polygon`,
//! `$center`): points on a plane, Euclidean distances. Boundaries are
//! inclusive, as MongoDB's flat shapes are.

use super::geometry::Pt;

pub fn distance(a: Pt, b: Pt) -> f64 {
    (a.x - b.x).hypot(a.y - b.y)
}

fn segment_distance(p: Pt, a: Pt, b: Pt) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    if len2 == 0.0 {
        return distance(p, a);
    }
    let t = (((p.x - a.x) * dx + (p.y - a.y) * dy) / len2).clamp(0.0, 1.0);
    distance(
        p,
        Pt {
            x: a.x + t * dx,
            y: a.y + t * dy,
        },
    )
}

/// `$box`: bottom-left and top-right corners (either order), inclusive.
pub fn in_box(p: Pt, a: Pt, b: Pt) -> bool {
    (a.x.min(b.x)..=a.x.max(b.x)).contains(&p.x) && (a.y.min(b.y)..=a.y.max(b.y)).contains(&p.y)
}

/// `$center`: within `r` of `c`, inclusive.
pub fn in_circle(p: Pt, c: Pt, r: f64) -> bool {
    distance(p, c) <= r
}

/// `$polygon` (closed implicitly): inside by the even-odd rule, or on an
/// edge.
pub fn in_polygon(p: Pt, vs: &[Pt]) -> bool {
    let n = vs.len();
    let mut inside = false;
    for i in 0..n {
        let (a, b) = (vs[i], vs[(i + 1) % n]);
        if segment_distance(p, a, b) <= 1e-12 * (1.0 + p.x.abs().max(p.y.abs())) {
            return true;
        }
        if (a.y > p.y) != (b.y > p.y) && p.x < (b.x - a.x) * (p.y - a.y) / (b.y - a.y) + a.x {
            inside = !inside;
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(x: f64, y: f64) -> Pt {
        Pt { x, y }
    }

    #[test]
    fn shapes_with_inclusive_boundaries() {
        let tri = [pt(0.0, 0.0), pt(4.0, 0.0), pt(0.0, 4.0)];
        assert!(in_polygon(pt(1.0, 1.0), &tri));
        assert!(in_polygon(pt(2.0, 2.0), &tri));
        assert!(in_polygon(pt(0.0, 0.0), &tri));
        assert!(!in_polygon(pt(3.0, 3.0), &tri));
        assert!(in_box(pt(1.0, 1.0), pt(0.0, 0.0), pt(1.0, 2.0)));
        assert!(!in_box(pt(1.5, 1.0), pt(0.0, 0.0), pt(1.0, 2.0)));
        assert!(in_circle(pt(3.0, 4.0), pt(0.0, 0.0), 5.0));
        assert!(!in_circle(pt(3.0, 4.1), pt(0.0, 0.0), 5.0));
        assert_eq!(distance(pt(0.0, 0.0), pt(3.0, 4.0)), 5.0);
    }
}
