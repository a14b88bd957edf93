// How the console writes times, phone numbers and durations: Asia/Shanghai and the
// groupings people here read at a glance.

export const ZONE = 'Asia/Shanghai'

/** 13800000001 -> "138 0000 0001"; 057487654321 -> "0574-8765 4321"; +86 kept in front. */
export function formatPhone(raw: string | null | undefined): string {
  if (!raw) return ''
  let digits = raw.replace(/[^\d+]/g, '')
  let prefix = ''
  if (digits.startsWith('+86')) {
    prefix = '+86 '
    digits = digits.slice(3)
  } else if (digits.startsWith('+')) {
    return raw.trim()
  }
  if (/^1\d{10}$/.test(digits)) return `${prefix}${digits.slice(0, 3)} ${digits.slice(3, 7)} ${digits.slice(7)}`
  // Landlines: a 3-digit area code for 010 and 02x, otherwise 4 digits.
  const m = /^(0(?:10|2\d|[3-9]\d{2}))(\d{7,8})$/.exec(digits)
  if (m) {
    const local = m[2]
    const split = local.length - 4
    return `${prefix}${m[1]}-${local.slice(0, split)} ${local.slice(split)}`
  }
  if (/^\d{7,8}$/.test(digits)) return `${digits.slice(0, digits.length - 4)} ${digits.slice(-4)}`
  return prefix + digits
}

const timeFmt: Record<string, Intl.DateTimeFormat> = {}

/** A timestamp as Shanghai wall time: "12-02 18:05:09" (today's date is left out). */
export function formatTime(iso: string | null | undefined, locale = 'zh-CN', now: Date = new Date()): string {
  if (!iso) return ''
  const at = new Date(iso)
  if (Number.isNaN(at.getTime())) return iso
  const key = locale
  timeFmt[key] ??= new Intl.DateTimeFormat(locale, {
    timeZone: ZONE,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hour12: false,
  })
  const parts = Object.fromEntries(timeFmt[key].formatToParts(at).map((p) => [p.type, p.value]))
  const today = Object.fromEntries(timeFmt[key].formatToParts(now).map((p) => [p.type, p.value]))
  const hour = parts.hour === '24' ? '00' : parts.hour
  const clock = `${hour}:${parts.minute}:${parts.second}`
  if (parts.year === today.year && parts.month === today.month && parts.day === today.day) return clock
  return `${parts.month}-${parts.day} ${clock}`
}

/** Seconds as "m:ss", or "h:mm:ss" past an hour. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—'
  const s = Math.max(0, Math.floor(seconds))
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = String(s % 60).padStart(2, '0')
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`
}

export function secondsSince(iso: string | null | undefined, now: number = Date.now()): number {
  if (!iso) return 0
  return Math.max(0, (now - new Date(iso).getTime()) / 1000)
}

export type Lateness = 'ok' | 'warn' | 'late'

/** Against a target: green until 2/3 of it, amber until it, red past it. */
export function lateness(seconds: number, targetS: number): Lateness {
  if (seconds > targetS) return 'late'
  if (seconds > (targetS * 2) / 3) return 'warn'
  return 'ok'
}

export function percent(share: number | null | undefined): string {
  if (share === null || share === undefined) return '—'
  return `${(share * 100).toFixed(1)}%`
}

/** Midnight in Shanghai (UTC+8 all year, no daylight saving) as an ISO instant: "today". */
export function startOfDayShanghai(now: number = Date.now()): string {
  const day = 86_400_000
  const offset = 8 * 3_600_000
  return new Date(Math.floor((now + offset) / day) * day - offset).toISOString()
}
