-- section: Causal interventions
-- title: Causal tracing: indirect effect of restoring one state
-- chart: heatmap x=pos y=layer value=effect facet=panel
-- note: Meng et al.: the clean prompt with Gaussian noise (3x the embedding std) on the subject tokens, one clean state restored at a time; P(answer) restored - P(answer) noised, averaged over noise samples and prompts. Facts prompts: position 0 is <|bos|>, 1-2 the subject's names, 3-4 the relation.
select model || ' ' || task || ' ' || kind as panel, layer, pos, round(effect, 4) as effect
from patching where method = 'causal_tracing'
order by panel, layer, pos
