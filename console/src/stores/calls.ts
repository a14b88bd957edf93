import { defineStore } from 'pinia'
import { ref } from 'vue'
import type { AgentState, FeedMessage, Schemas } from '@/api/client'

export type Ringing = Schemas['CallRinging']
export interface LiveCall {
  id: string
  caller_num?: string | null
  state?: string
  [key: string]: unknown
}

/** The screen pop of this operator, and the queue's live state for the wallboard. */
export const useCalls = defineStore('calls', () => {
  const pop = ref<Ringing | null>(null)
  const popState = ref<'ringing' | 'answered' | 'ended'>('ringing')
  const live = ref<Record<string, LiveCall>>({})
  const agents = ref<Record<string, AgentState>>({})

  function callId(call: Record<string, unknown>): string {
    return String(call.id ?? call.linkedid ?? '')
  }

  function apply(message: FeedMessage): void {
    switch (message.type) {
      case 'call.ringing':
        pop.value = message
        popState.value = 'ringing'
        break
      case 'call.answered':
      case 'call.ring_stopped':
      case 'call.ended':
        if (pop.value && callId(pop.value.call) === callId(message.call)) {
          if (message.type === 'call.answered') popState.value = 'answered'
          else if (message.type === 'call.ended' || popState.value === 'ringing') popState.value = 'ended'
        }
        break
      case 'wallboard.call': {
        const call = message.call as LiveCall
        const id = callId(call)
        if (['ended', 'abandoned', 'hangup'].includes(message.change) || call.state === 'ended') delete live.value[id]
        else live.value[id] = { ...call, id }
        break
      }
      case 'wallboard.agent':
        agents.value[message.agent.extension] = message.agent
        break
      default:
        break
    }
  }

  function dismiss(): void {
    pop.value = null
  }

  function setAgents(list: AgentState[]): void {
    agents.value = Object.fromEntries(list.map((a) => [a.extension, a]))
  }

  return { pop, popState, live, agents, apply, dismiss, setAgents }
})
