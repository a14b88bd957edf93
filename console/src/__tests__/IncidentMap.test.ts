import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import IncidentMap from '@/components/IncidentMap.vue'
import { REACH_M } from '@/geo'
import { i18n } from '@/i18n'

describe('the incident map', () => {
  it('draws the elder at the centre, the 15-minute circle, providers and the one en route', () => {
    const elder = { lat: 30.0, lon: 121.1 }
    const wrapper = mount(IncidentMap, {
      props: {
        elder,
        providers: [
          { id: 'p1', name: '阳光站', lat: 30.01, lon: 121.1, chosen: true },
          { id: 'p2', name: '康乐站', lat: 29.99, lon: 121.12 },
        ],
        enRoute: { lat: 30.005, lon: 121.1 },
      },
      global: { plugins: [i18n] },
    })
    expect(wrapper.findAll('[data-testid="map-provider"]')).toHaveLength(2)
    const circle = wrapper.get('[data-testid="reach-circle"]')
    expect(Number(circle.attributes('r'))).toBeCloseTo(REACH_M, 0)
    expect(REACH_M).toBeCloseTo(3000, -1)
    // North is up: a provider 1.1 km north of the elder is drawn above the centre.
    const north = wrapper.findAll('[data-testid="map-provider"] rect')[0]
    expect(Number(north.attributes('y'))).toBeLessThan(0)
    expect(wrapper.find('[data-testid="map-enroute"]').exists()).toBe(true)
    expect(wrapper.text()).toContain('阳光站')
  })
})
