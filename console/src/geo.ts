// Plain geometry for the incident map and the provider picker: no tiles, no service.

export interface Point {
  lat: number
  lon: number
}

const R = 6_371_000

export function distanceM(a: Point, b: Point): number {
  const rad = Math.PI / 180
  const dLat = (b.lat - a.lat) * rad
  const dLon = (b.lon - a.lon) * rad
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2
  return 2 * R * Math.asin(Math.sqrt(h))
}

/** A local projection around ``centre`` in metres east and north (fine over a district). */
export function project(centre: Point, p: Point): { x: number; y: number } {
  const rad = Math.PI / 180
  return {
    x: (p.lon - centre.lon) * rad * R * Math.cos(centre.lat * rad),
    y: (p.lat - centre.lat) * rad * R,
  }
}

/** The view box (metres) that holds every point and a circle of ``radiusM`` around the centre. */
export function fit(centre: Point, points: Point[], radiusM: number): { half: number } {
  let half = radiusM * 1.15
  for (const p of points) {
    const { x, y } = project(centre, p)
    half = Math.max(half, Math.abs(x) * 1.1, Math.abs(y) * 1.1)
  }
  return { half }
}

// 15 minutes for a service station's electric bike (dispatch/ranking.py RoadFactorEstimator):
// 1 min to set off, then 14 min at 18 km/h over roads 1.4 times the straight line.
export const REACH_M = (((15 - 1) / 60) * 18_000) / 1.4
