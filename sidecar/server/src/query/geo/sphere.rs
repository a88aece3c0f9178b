//! Geometry on the sphere (what a 2dsphere index and GeoJSON queries use):
//! positions as unit vectors, edges as great-circle arcs, distances as
//! angles (radians; metres on MongoDB's earth radius).
//!
//! A polygon's ring bounds the smaller of the two regions it splits the
//! sphere into, as MongoDB takes a GeoJSON polygon without its "strict
//! winding" CRS. A point on a region's boundary (within [`ON_EDGE`]) is in
//! it: MongoDB tests a point's leaf S2 cell (about 1 cm) against the
//! region, so a point on an edge is within it and intersects it.

use super::geometry::{Geometry, Pt};

/// MongoDB's earth radius (`kRadiusOfEarthInMeters`).
pub const EARTH_RADIUS_METERS: f64 = 6_378_100.0;

/// About one centimetre on the earth, in radians: MongoDB's leaf-cell
/// tolerance at a boundary.
pub const ON_EDGE: f64 = 1.6e-9;

/// A unit vector (or a cross product of two).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct V3(pub [f64; 3]);

impl V3 {
    /// The unit vector of a longitude/latitude in degrees.
    pub fn from_lng_lat(p: Pt) -> V3 {
        let (lng, lat) = (p.x.to_radians(), p.y.to_radians());
        V3([lat.cos() * lng.cos(), lat.cos() * lng.sin(), lat.sin()])
    }

    pub fn dot(self, o: V3) -> f64 {
        self.0[0] * o.0[0] + self.0[1] * o.0[1] + self.0[2] * o.0[2]
    }

    pub fn cross(self, o: V3) -> V3 {
        let (a, b) = (self.0, o.0);
        V3([
            a[1] * b[2] - a[2] * b[1],
            a[2] * b[0] - a[0] * b[2],
            a[0] * b[1] - a[1] * b[0],
        ])
    }

    pub fn plus(self, o: V3) -> V3 {
        V3([self.0[0] + o.0[0], self.0[1] + o.0[1], self.0[2] + o.0[2]])
    }

    pub fn scale(self, k: f64) -> V3 {
        V3([self.0[0] * k, self.0[1] * k, self.0[2] * k])
    }

    pub fn norm(self) -> f64 {
        self.dot(self).sqrt()
    }

    pub fn normalize(self) -> V3 {
        let n = self.norm();
        if n == 0.0 { self } else { self.scale(1.0 / n) }
    }

    /// Any unit vector orthogonal to this one.
    fn orthogonal(self) -> V3 {
        let [x, y, z] = self.0;
        let other = if x.abs() <= y.abs() && x.abs() <= z.abs() {
            V3([1.0, 0.0, 0.0])
        } else if y.abs() <= z.abs() {
            V3([0.0, 1.0, 0.0])
        } else {
            V3([0.0, 0.0, 1.0])
        };
        self.cross(other).normalize()
    }
}

/// The angle between two unit vectors (radians), accurate at every size.
pub fn angle(a: V3, b: V3) -> f64 {
    a.cross(b).norm().atan2(a.dot(b))
}

/// The great-circle distance (radians) between two longitude/latitude
/// positions by the haversine formula.
pub fn haversine(a: Pt, b: Pt) -> f64 {
    let (la1, la2) = (a.y.to_radians(), b.y.to_radians());
    let dlat = la2 - la1;
    let dlng = (b.x - a.x).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlng / 2.0).sin().powi(2);
    2.0 * h.sqrt().min(1.0).asin()
}

/// `det(a, b, c)` = `a · (b × c)`, computed from the differences `b − a`
/// and `c − a` (the same value) so that it keeps its sign for nearby,
/// nearly collinear points: short edges of a dense ring give
/// determinants near 1e-17, below the rounding of `a · (b × c)`.
fn det(a: V3, b: V3, c: V3) -> f64 {
    let (ba, ca) = (b.plus(a.scale(-1.0)), c.plus(a.scale(-1.0)));
    a.dot(ba.cross(ca))
}

/// Whether arcs `ab` and `cd` cross at a point interior to both (S2's
/// `SimpleCrossing`; arcs shorter than a half circle).
pub fn crosses(a: V3, b: V3, c: V3, d: V3) -> bool {
    let acb = -det(a, b, c);
    let bda = det(a, b, d);
    if acb * bda <= 0.0 {
        return false;
    }
    let cbd = -det(c, d, b);
    let dac = det(c, d, a);
    acb * cbd > 0.0 && acb * dac > 0.0
}

/// The angle from `p` to the nearest point of arc `ab`.
pub fn edge_distance(p: V3, a: V3, b: V3) -> f64 {
    let n = a.cross(b);
    if n.norm() > 1e-300 {
        // The nearest point of the great circle lies on the arc when it is
        // between a and b.
        let foot = p.plus(n.scale(-p.dot(n) / n.dot(n)));
        if foot.norm() > 1e-300 && a.cross(foot).dot(n) >= 0.0 && foot.cross(b).dot(n) >= 0.0 {
            return angle(p, foot.normalize());
        }
    }
    angle(p, a).min(angle(p, b))
}

/// Whether two arcs touch: they cross, or an end of one lies on the other.
fn arcs_meet(a: V3, b: V3, c: V3, d: V3) -> bool {
    crosses(a, b, c, d)
        || edge_distance(a, c, d) <= ON_EDGE
        || edge_distance(b, c, d) <= ON_EDGE
        || edge_distance(c, a, b) <= ON_EDGE
        || edge_distance(d, a, b) <= ON_EDGE
}

/// The signed area of the spherical triangle `abc` (positive when
/// counter-clockwise seen from outside the sphere).
fn signed_area(a: V3, b: V3, c: V3) -> f64 {
    2.0 * a
        .dot(b.cross(c))
        .atan2(1.0 + a.dot(b) + b.dot(c) + c.dot(a))
}

/// A ring on the sphere, oriented so its interior (the smaller region) is
/// on the left of each edge.
#[derive(Debug, Clone)]
pub struct Loop {
    /// The vertices, not repeating the first.
    pub v: Vec<V3>,
    /// A point known to be inside (just left of the longest edge).
    inside: V3,
}

impl Loop {
    /// The loop of a closed ring (its last position repeats the first).
    pub fn new(ring: &[Pt]) -> Loop {
        let n = ring.len().saturating_sub(1).max(1);
        let mut v: Vec<V3> = ring[..n.min(ring.len())]
            .iter()
            .map(|p| V3::from_lng_lat(*p))
            .collect();
        let area: f64 = (1..v.len().saturating_sub(1))
            .map(|i| signed_area(v[0], v[i], v[i + 1]))
            .sum();
        if area < 0.0 {
            v.reverse();
        }
        if v.is_empty() {
            // Not from a parsed ring (those have 3 vertices or more).
            return Loop {
                v,
                inside: V3([0.0, 0.0, 1.0]),
            };
        }
        let (mut best, mut len) = (0, -1.0);
        for i in 0..v.len() {
            let l = angle(v[i], v[(i + 1) % v.len()]);
            if l > len {
                (best, len) = (i, l);
            }
        }
        let (a, b) = (v[best], v[(best + 1) % v.len()]);
        let left = a.cross(b).normalize();
        let step = (len * 1e-3).clamp(1e-12, 1e-9);
        let inside = a.plus(b).normalize().plus(left.scale(step)).normalize();
        Loop { v, inside }
    }

    pub fn edges(&self) -> impl Iterator<Item = (V3, V3)> + '_ {
        (0..self.v.len()).map(|i| (self.v[i], self.v[(i + 1) % self.v.len()]))
    }

    fn crossings(&self, from: V3, to: V3) -> usize {
        self.edges()
            .filter(|(a, b)| crosses(from, to, *a, *b))
            .count()
    }

    /// Whether `p` is strictly inside (boundary points may go either way:
    /// see [`Loop::contains`]).
    pub fn contains_strict(&self, p: V3) -> bool {
        let r = self.inside;
        let n = if p.dot(r) < -0.5 {
            // Nearly antipodal: go round through a point 90° from both.
            let mid = p.cross(r);
            let mid = if mid.norm() < 1e-9 {
                p.orthogonal()
            } else {
                mid.normalize()
            };
            self.crossings(p, mid) + self.crossings(mid, r)
        } else {
            self.crossings(p, r)
        };
        n.is_multiple_of(2)
    }

    pub fn boundary_distance(&self, p: V3) -> f64 {
        self.edges()
            .map(|(a, b)| edge_distance(p, a, b))
            .fold(f64::INFINITY, f64::min)
    }

    /// Whether `p` is inside or on the boundary.
    pub fn contains(&self, p: V3) -> bool {
        self.contains_strict(p) || self.boundary_distance(p) <= ON_EDGE
    }
}

/// A polygon on the sphere: a shell and its holes.
#[derive(Debug, Clone)]
pub struct SPolygon {
    pub outer: Loop,
    pub holes: Vec<Loop>,
}

impl SPolygon {
    pub fn new(rings: &[Vec<Pt>]) -> SPolygon {
        let mut loops = rings.iter().map(|r| Loop::new(r));
        let outer = loops.next().unwrap_or_else(|| Loop::new(&[]));
        SPolygon {
            outer,
            holes: loops.collect(),
        }
    }

    /// Inside the shell (boundary included) and not strictly inside a hole.
    pub fn contains(&self, p: V3) -> bool {
        self.outer.contains(p)
            && !self
                .holes
                .iter()
                .any(|h| h.contains_strict(p) && h.boundary_distance(p) > ON_EDGE)
    }

    pub fn edges(&self) -> impl Iterator<Item = (V3, V3)> + '_ {
        std::iter::once(&self.outer)
            .chain(&self.holes)
            .flat_map(Loop::edges)
    }

    fn vertices(&self) -> impl Iterator<Item = V3> + '_ {
        std::iter::once(&self.outer)
            .chain(&self.holes)
            .flat_map(|l| l.v.iter().copied())
    }

    pub fn distance(&self, p: V3) -> f64 {
        if self.contains(p) {
            return 0.0;
        }
        self.edges()
            .map(|(a, b)| edge_distance(p, a, b))
            .fold(f64::INFINITY, f64::min)
    }
}

/// A geometry on the sphere, as its parts.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    pub points: Vec<V3>,
    pub lines: Vec<Vec<V3>>,
    pub polygons: Vec<SPolygon>,
}

fn to_line(ps: &[Pt]) -> Vec<V3> {
    ps.iter().map(|p| V3::from_lng_lat(*p)).collect()
}

fn line_edges(l: &[V3]) -> impl Iterator<Item = (V3, V3)> + '_ {
    l.windows(2).map(|w| (w[0], w[1]))
}

impl Shape {
    pub fn point(p: Pt) -> Shape {
        Shape {
            points: vec![V3::from_lng_lat(p)],
            ..Shape::default()
        }
    }

    pub fn of(g: &Geometry) -> Shape {
        let mut s = Shape::default();
        s.add_geometry(g);
        s
    }

    fn add_geometry(&mut self, g: &Geometry) {
        match g {
            Geometry::Point(p) => self.points.push(V3::from_lng_lat(*p)),
            Geometry::MultiPoint(ps) => self.points.extend(ps.iter().map(|p| V3::from_lng_lat(*p))),
            Geometry::LineString(l) => self.lines.push(to_line(l)),
            Geometry::MultiLineString(ls) => self.lines.extend(ls.iter().map(|l| to_line(l))),
            Geometry::Polygon(p) => self.polygons.push(SPolygon::new(&p.rings)),
            Geometry::MultiPolygon(ps) => self
                .polygons
                .extend(ps.iter().map(|p| SPolygon::new(&p.rings))),
            Geometry::Collection(gs) => gs.iter().for_each(|g| self.add_geometry(g)),
        }
    }

    /// Every arc of the shape (lines and rings).
    fn edges(&self) -> impl Iterator<Item = (V3, V3)> + '_ {
        self.lines
            .iter()
            .flat_map(|l| line_edges(l))
            .chain(self.polygons.iter().flat_map(SPolygon::edges))
    }

    /// Every vertex of the shape.
    fn vertices(&self) -> impl Iterator<Item = V3> + '_ {
        self.points
            .iter()
            .copied()
            .chain(self.lines.iter().flatten().copied())
            .chain(self.polygons.iter().flat_map(SPolygon::vertices))
    }

    /// The angle from `p` to the nearest point of the shape (0 inside a
    /// polygon).
    pub fn distance(&self, p: V3) -> f64 {
        let points = self.points.iter().map(|q| angle(p, *q));
        let lines = self.lines.iter().flat_map(|l| {
            let single = (l.len() == 1).then(|| angle(p, l[0]));
            line_edges(l)
                .map(move |(a, b)| edge_distance(p, a, b))
                .chain(single)
        });
        let polys = self.polygons.iter().map(|poly| poly.distance(p));
        points
            .chain(lines)
            .chain(polys)
            .fold(f64::INFINITY, f64::min)
    }

    /// Whether the two shapes share a point: a vertex of one on or in the
    /// other, or two arcs crossing. O(|self| × |other|).
    pub fn intersects(&self, other: &Shape) -> bool {
        self.vertices().any(|v| other.distance(v) <= ON_EDGE)
            || other.vertices().any(|v| self.distance(v) <= ON_EDGE)
            || self
                .edges()
                .any(|(a, b)| other.edges().any(|(c, d)| arcs_meet(a, b, c, d)))
    }

    /// Whether every part of the shape lies in one of `region`'s polygons.
    pub fn within(&self, region: &[SPolygon]) -> bool {
        let point_in = |p: V3| region.iter().any(|r| r.contains(p));
        let chain_in = |vs: &[V3], edges: &mut dyn Iterator<Item = (V3, V3)>| {
            let edges: Vec<(V3, V3)> = edges.collect();
            region.iter().any(|r| {
                vs.iter().all(|v| r.contains(*v))
                    && !edges
                        .iter()
                        .any(|(a, b)| r.edges().any(|(c, d)| crosses(*a, *b, c, d)))
            })
        };
        self.points.iter().all(|p| point_in(*p))
            && self.lines.iter().all(|l| chain_in(l, &mut line_edges(l)))
            && self.polygons.iter().all(|poly| {
                chain_in(&poly.outer.v, &mut poly.outer.edges())
                    // A hole of the region inside this polygon leaves part
                    // of it outside the region.
                    && region.iter().all(|r| {
                        r.holes.iter().all(|h| {
                            !h.v.iter().any(|v| {
                                poly.contains(*v) && poly.outer.boundary_distance(*v) > ON_EDGE
                            })
                        })
                    })
            })
    }

    /// Whether every vertex lies within `radius` of `center` (a cap of at
    /// most a hemisphere is convex: arcs between its points stay in it).
    pub fn within_cap(&self, center: V3, radius: f64) -> bool {
        self.vertices()
            .all(|v| angle(center, v) <= radius + ON_EDGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(x: f64, y: f64) -> Pt {
        Pt { x, y }
    }

    fn v(x: f64, y: f64) -> V3 {
        V3::from_lng_lat(pt(x, y))
    }

    fn ring(ps: &[(f64, f64)]) -> Vec<Pt> {
        let mut r: Vec<Pt> = ps.iter().map(|(x, y)| pt(*x, *y)).collect();
        r.push(r[0]);
        r
    }

    #[test]
    fn haversine_matches_known_distances() {
        // New York to London: about 5570 km (on a 6378.1 km radius: 5576).
        let d = haversine(pt(-74.006, 40.7128), pt(-0.1278, 51.5074)) * EARTH_RADIUS_METERS;
        assert!((d - 5_576_000.0).abs() < 10_000.0, "{d}");
        // A quarter meridian.
        let q = haversine(pt(0.0, 0.0), pt(0.0, 90.0));
        assert!((q - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
        assert!((angle(v(0.0, 0.0), v(0.0, 90.0)) - q).abs() < 1e-12);
        assert_eq!(haversine(pt(10.0, 10.0), pt(10.0, 10.0)), 0.0);
    }

    #[test]
    fn orientation_does_not_matter_the_smaller_region_is_inside() {
        let ccw = SPolygon::new(&[ring(&[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)])]);
        let cw = SPolygon::new(&[ring(&[(0.0, 0.0), (0.0, 10.0), (10.0, 10.0), (10.0, 0.0)])]);
        for p in [&ccw, &cw] {
            assert!(p.contains(v(5.0, 5.0)));
            assert!(!p.contains(v(15.0, 5.0)));
            assert!(!p.contains(v(-175.0, -5.0)));
        }
    }

    #[test]
    fn antimeridian_poles_holes_and_edges() {
        // A box across the antimeridian, from 170°E to 170°W.
        let am = SPolygon::new(&[ring(&[
            (170.0, -10.0),
            (-170.0, -10.0),
            (-170.0, 10.0),
            (170.0, 10.0),
        ])]);
        assert!(am.contains(v(180.0, 0.0)));
        assert!(am.contains(v(-175.0, 5.0)));
        assert!(am.contains(v(175.0, -5.0)));
        assert!(!am.contains(v(0.0, 0.0)));
        assert!(!am.contains(v(160.0, 0.0)));
        // A cap around the north pole (a ring at 80°N).
        let cap = SPolygon::new(&[ring(&[
            (0.0, 80.0),
            (90.0, 80.0),
            (180.0, 80.0),
            (-90.0, 80.0),
        ])]);
        assert!(cap.contains(v(0.0, 90.0)));
        assert!(cap.contains(v(45.0, 85.0)));
        assert!(!cap.contains(v(45.0, 60.0)));
        // A hole: in the shell and in the hole is out; on the hole's edge is in.
        let holed = SPolygon::new(&[
            ring(&[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]),
            ring(&[(4.0, 4.0), (6.0, 4.0), (6.0, 6.0), (4.0, 6.0)]),
        ]);
        assert!(holed.contains(v(2.0, 2.0)));
        assert!(!holed.contains(v(5.0, 5.0)));
        assert!(holed.contains(v(4.0, 5.0)));
        // On an edge (a meridian edge) and at a vertex: within.
        let sq = SPolygon::new(&[ring(&[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)])]);
        assert!(sq.contains(v(0.0, 5.0)));
        assert!(sq.contains(v(10.0, 10.0)));
        assert!(!sq.contains(v(-0.001, 5.0)));
    }

    #[test]
    fn crossing_distances_and_intersections() {
        assert!(crosses(
            v(0.0, -1.0),
            v(0.0, 1.0),
            v(-1.0, 0.0),
            v(1.0, 0.0)
        ));
        assert!(!crosses(
            v(0.0, 1.0),
            v(0.0, 2.0),
            v(-1.0, 0.0),
            v(1.0, 0.0)
        ));
        // 1° of latitude from an equator arc.
        let d = edge_distance(v(0.0, 1.0), v(-5.0, 0.0), v(5.0, 0.0));
        assert!((d - 1f64.to_radians()).abs() < 1e-12);
        // Beyond the arc's end, the distance is to the end.
        let d = edge_distance(v(10.0, 0.0), v(-5.0, 0.0), v(5.0, 0.0));
        assert!((d - 5f64.to_radians()).abs() < 1e-12);
        let line = Shape {
            lines: vec![vec![v(-5.0, 5.0), v(15.0, 5.0)]],
            ..Shape::default()
        };
        let sq = Shape {
            polygons: vec![SPolygon::new(&[ring(&[
                (0.0, 0.0),
                (10.0, 0.0),
                (10.0, 10.0),
                (0.0, 10.0),
            ])])],
            ..Shape::default()
        };
        assert!(line.intersects(&sq));
        assert!(sq.intersects(&line));
        assert!(!line.within(&sq.polygons));
        let inner = Shape {
            lines: vec![vec![v(1.0, 5.0), v(9.0, 5.0)]],
            ..Shape::default()
        };
        assert!(inner.within(&sq.polygons));
        let far = Shape::point(pt(50.0, 50.0));
        assert!(!far.intersects(&sq));
        assert!(Shape::point(pt(10.0, 5.0)).intersects(&sq));
    }
}
