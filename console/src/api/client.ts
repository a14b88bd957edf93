// The typed API client: paths and models are generated from /api/v1/openapi.json
// (src/api/schema.d.ts), so a change on the server that the console does not follow
// fails the type-check instead of failing in front of an operator.
import createClient, { type Middleware } from 'openapi-fetch'
import type { components, paths } from './schema'

export type Schemas = components['schemas']
export type FeedMessage = Schemas['ConsoleFeed']
export type Incident = Schemas['Incident']
export type IncidentDetail = Schemas['StaffIncidentDetail']
export type Offer = Schemas['Offer']
export type Elder = Schemas['ElderDetail']
export type CallProfile = Schemas['CallProfile']
export type AgentState = Schemas['AgentState']
export type ServiceRequest = Schemas['ServiceRequest']
export type Provider = Schemas['Provider']
export type CallStats = Schemas['CallStats']
export type Me = Schemas['SignedIn']

let csrfToken: string | null = null

export function setCsrf(token: string | null): void {
  csrfToken = token
}

const csrf: Middleware = {
  onRequest({ request }) {
    if (csrfToken && request.method !== 'GET' && request.method !== 'HEAD') {
      request.headers.set('X-CSRF-Token', csrfToken)
    }
    return request
  },
}

export const api = createClient<paths>({ baseUrl: location.origin, credentials: 'same-origin' })
api.use(csrf)

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field: string | null = null,
  ) {
    super(message)
  }
}

interface ErrorShape {
  error?: { code?: string; message?: string; field?: string | null }
}

/** The data of an openapi-fetch answer, or an ApiError carrying the server's message. */
export async function ok<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, error, response } = await call
  if (error !== undefined || data === undefined) {
    const e = (error as ErrorShape | undefined)?.error
    throw new ApiError(response.status, e?.code ?? 'http', e?.message ?? response.statusText, e?.field ?? null)
  }
  return data
}
