import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api, ok, type FeedMessage, type Incident, type IncidentDetail } from '@/api/client'
import { playAlarm } from '@/sound'

export const OPEN_STATUSES = ['open', 'acknowledged', 'dispatched', 'accepted', 'en_route', 'on_scene'] as const
const SEVERITY_RANK: Record<string, number> = { critical: 0, high: 1, medium: 2, low: 3 }
// Not yet acknowledged outranks everything else of the same severity.
const STATUS_RANK: Record<string, number> = { open: 0, acknowledged: 1, dispatched: 2, accepted: 3, en_route: 3, on_scene: 4 }

export function isOpen(status: string): boolean {
  return (OPEN_STATUSES as readonly string[]).includes(status)
}

/** Most urgent first: severity, then unacknowledged, then the longest waiting. */
export function byUrgency(a: Incident, b: Incident): number {
  return (
    (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) ||
    (STATUS_RANK[a.status] ?? 9) - (STATUS_RANK[b.status] ?? 9) ||
    a.created_at.localeCompare(b.created_at)
  )
}

/** The open incidents of the alarm board, kept current from the feed. */
export const useAlarms = defineStore('alarms', () => {
  const byId = ref<Record<string, Incident>>({})
  const details = ref<Record<string, IncidentDetail>>({})
  const flash = ref<Record<string, number>>({})
  const loading = ref(false)

  const open = computed(() => Object.values(byId.value).filter((i) => isOpen(i.status)).sort(byUrgency))

  async function load(): Promise<void> {
    loading.value = true
    try {
      const page = await ok(api.GET('/api/v1/incidents', { params: { query: { status: OPEN_STATUSES.join(','), limit: 200 } } }))
      byId.value = Object.fromEntries(page.items.map((i) => [i.id, i]))
      await Promise.all(page.items.map((i) => refreshDetail(i.id)))
    } finally {
      loading.value = false
    }
  }

  async function refreshDetail(id: string): Promise<IncidentDetail | undefined> {
    try {
      const d = await ok(api.GET('/api/v1/incidents/{id}', { params: { path: { id } } }))
      details.value[id] = d
      return d
    } catch {
      return undefined
    }
  }

  function upsert(incident: Incident): void {
    if (isOpen(incident.status)) byId.value[incident.id] = incident
    else {
      delete byId.value[incident.id]
      delete details.value[incident.id]
    }
  }

  /** The next escalation step that has not run, with its due time. */
  function nextStep(id: string): { track: string; step: number; due_at: string } | null {
    const steps = (details.value[id]?.escalation ?? []).filter((s) => s.state === 'pending')
    steps.sort((a, b) => a.due_at.localeCompare(b.due_at))
    return steps[0] ?? null
  }

  function apply(message: FeedMessage, opts: { sound?: boolean } = {}): void {
    switch (message.type) {
      case 'incident.created':
      case 'incident.merged':
      case 'incident.updated': {
        const incident = message.incident as Incident
        const isNew = message.type === 'incident.created' && !byId.value[incident.id]
        upsert(incident)
        if (isNew) {
          flash.value[incident.id] = Date.now()
          if (opts.sound !== false) playAlarm(incident.severity)
        }
        if (isOpen(incident.status)) void refreshDetail(incident.id)
        break
      }
      case 'offer.created':
      case 'offer.updated':
      case 'offer.closed': {
        const id = message.offer.incident_id
        if (id && byId.value[id]) void refreshDetail(id)
        break
      }
      case 'resync':
        void load()
        break
      default:
        break
    }
  }

  return { byId, details, flash, loading, open, load, refreshDetail, upsert, nextStep, apply }
})
