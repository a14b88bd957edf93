import { describe, expect, it } from 'vitest'
import { formatDuration, formatPhone, formatTime, lateness, percent, startOfDayShanghai } from '@/format'

describe('formatPhone', () => {
  it('groups mobiles 3-4-4', () => {
    expect(formatPhone('13800000001')).toBe('138 0000 0001')
    expect(formatPhone('+8613800000001')).toBe('+86 138 0000 0001')
    expect(formatPhone('138-0000-0001')).toBe('138 0000 0001')
  })
  it('writes landlines with the area code apart', () => {
    expect(formatPhone('057487654321')).toBe('0574-8765 4321')
    expect(formatPhone('01087654321')).toBe('010-8765 4321')
    expect(formatPhone('87654321')).toBe('8765 4321')
  })
  it('leaves service numbers and foreign numbers alone', () => {
    expect(formatPhone('12349')).toBe('12349')
    expect(formatPhone('+44 20 7946 0958')).toBe('+44 20 7946 0958')
    expect(formatPhone(null)).toBe('')
  })
})

describe('formatTime', () => {
  it('shows Shanghai wall time, not UTC', () => {
    const now = new Date('2026-12-02T10:00:00Z')
    expect(formatTime('2026-12-02T01:02:03Z', 'zh-CN', now)).toBe('09:02:03')
  })
  it('adds the date for another Shanghai day', () => {
    // 23:30 UTC on the 1st is already 07:30 on the 2nd in Shanghai.
    const now = new Date('2026-12-03T04:00:00Z')
    expect(formatTime('2026-12-01T23:30:00Z', 'zh-CN', now)).toBe('12-02 07:30:00')
  })
})

describe('durations and targets', () => {
  it('formats m:ss and h:mm:ss', () => {
    expect(formatDuration(65)).toBe('1:05')
    expect(formatDuration(3725)).toBe('1:02:05')
    expect(formatDuration(null)).toBe('—')
  })
  it('colours against a target', () => {
    expect(lateness(10, 30)).toBe('ok')
    expect(lateness(25, 30)).toBe('warn')
    expect(lateness(31, 30)).toBe('late')
  })
  it('writes shares as percentages', () => {
    expect(percent(0.975)).toBe('97.5%')
    expect(percent(null)).toBe('—')
  })
  it('finds Shanghai midnight', () => {
    expect(startOfDayShanghai(Date.parse('2026-12-02T17:00:00Z'))).toBe('2026-12-02T16:00:00.000Z')
    expect(startOfDayShanghai(Date.parse('2026-12-02T15:59:00Z'))).toBe('2026-12-01T16:00:00.000Z')
  })
})
