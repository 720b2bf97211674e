-- section: Brain alignment
-- title: Permutation p-values per layer and region (-log10 p)
-- chart: heatmap x=layer y=region value=minus_log10_p facet=panel
-- note: p = (1 + permutations whose median r reaches the observed one) / (1 + permutations), the responses permuted within passages (the stimulus-response pairing broken, the passage structure kept). With 100 permutations the smallest p is 1/101 (-log10 p = 2.0); 1.3 is p = 0.05.
select model || ' / ' || subject || ' (' || init || ')' as panel, roi as region, layer, -log10(p_value) as minus_log10_p
from brain_layers
where features = 'activations' and hook = 'resid_post' and p_value is not null
order by panel, region, layer
