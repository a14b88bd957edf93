import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import type { FeedMessage } from '@/api/client'
import { useCalls } from '@/stores/calls'

const ringing = (linkedid: string) =>
  ({ type: 'call.ringing', call: { linkedid, caller_num: '13800000001' }, operator: { id: 'u', name: 'op', member: 'op1001' }, profile: null }) as unknown as FeedMessage
const change = (type: string, linkedid: string) => ({ type, call: { linkedid } }) as unknown as FeedMessage

describe('the call store', () => {
  beforeEach(() => setActivePinia(createPinia()))

  it('pops on ringing and follows that call only', () => {
    const calls = useCalls()
    calls.apply(ringing('L1'))
    expect(calls.pop?.call.linkedid).toBe('L1')
    expect(calls.popState).toBe('ringing')
    calls.apply(change('call.answered', 'L2')) // someone else's call
    expect(calls.popState).toBe('ringing')
    calls.apply(change('call.answered', 'L1'))
    expect(calls.popState).toBe('answered')
    calls.apply(change('call.ended', 'L1'))
    expect(calls.popState).toBe('ended')
    expect(calls.pop).not.toBeNull() // the profile stays until the operator closes it
    calls.dismiss()
    expect(calls.pop).toBeNull()
  })

  it('marks a call that stopped ringing here (answered elsewhere) as ended', () => {
    const calls = useCalls()
    calls.apply(ringing('L1'))
    calls.apply(change('call.ring_stopped', 'L1'))
    expect(calls.popState).toBe('ended')
  })

  it('keeps the queue for the wallboard: waiting calls come and go', () => {
    const calls = useCalls()
    const board = (change: string, state: string) =>
      ({ type: 'wallboard.call', change, call: { linkedid: 'L9', state } }) as unknown as FeedMessage
    calls.apply(board('joined', 'queued'))
    expect(Object.keys(calls.live)).toEqual(['L9'])
    calls.apply(board('ended', 'ended'))
    expect(calls.live).toEqual({})
  })
})
