import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import type { FeedMessage, Incident } from '@/api/client'
import { byUrgency, useAlarms } from '@/stores/alarms'

function incident(id: string, severity: Incident['severity'], status: Incident['status'], created: string): Incident {
  return {
    id, elder_id: 'eld_1', device_id: 'dev_1', type: 'sos', severity, status, source: 'device', location: null, signals: [],
    service: null, provider_id: null, acknowledged_at: null, acknowledged_by: null, family_confirmed_at: null,
    family_confirmed_by: null, policy: null, created_at: created, updated_at: created, closed_at: null,
  }
}

const elder = { id: 'eld_1', name: '王秀英', age: 86, address: '余姚' }

describe('the alarm board store', () => {
  beforeEach(() => setActivePinia(createPinia()))

  it('puts the most severe first, then the unacknowledged, then the longest waiting', () => {
    const list = [
      incident('a', 'medium', 'open', '2026-12-02T10:00:00Z'),
      incident('b', 'critical', 'acknowledged', '2026-12-02T10:05:00Z'),
      incident('c', 'critical', 'open', '2026-12-02T10:06:00Z'),
      incident('d', 'critical', 'open', '2026-12-02T10:01:00Z'),
    ]
    expect(list.sort(byUrgency).map((i) => i.id)).toEqual(['d', 'c', 'b', 'a'])
  })

  it('adds new alarms from the feed, flags them, and drops closed ones', () => {
    const store = useAlarms()
    const created = { type: 'incident.created', incident: incident('x', 'high', 'open', '2026-12-02T10:00:00Z'), elder } as unknown as FeedMessage
    store.apply(created, { sound: false })
    expect(store.open.map((i) => i.id)).toEqual(['x'])
    expect(store.flash.x).toBeGreaterThan(0)
    const resolved = { type: 'incident.updated', incident: incident('x', 'high', 'resolved', '2026-12-02T10:00:00Z') } as unknown as FeedMessage
    store.apply(resolved, { sound: false })
    expect(store.open).toEqual([])
  })

  it('names the next pending escalation step, earliest first', () => {
    const store = useAlarms()
    store.details.x = {
      escalation: [
        { track: 'ack', step: 2, due_at: '2026-12-02T10:02:00Z', state: 'pending', runs: 0 },
        { track: 'ack', step: 1, due_at: '2026-12-02T10:00:30Z', state: 'done', runs: 1 },
        { track: 'family', step: 1, due_at: '2026-12-02T10:01:00Z', state: 'pending', runs: 0 },
      ],
    } as never
    expect(store.nextStep('x')).toMatchObject({ track: 'family', step: 1 })
  })
})
