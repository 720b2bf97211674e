-- section: Activation sparsity
-- title: Active MLP neurons per layer
-- chart: line x=layer y=fraction series=model facet=measure
-- note: Left: the mean fraction of neurons active per token (ReLU: nonzero; GELU/SiLU: |activation| above the run's threshold, see the rule column). Right: the fraction of neurons that must be kept so that the truncated neurons' summed contribution stays at the CETT target ("Sparsing Law"); lower means sparser.
select model, layer,
       case metric when 'active_fraction' then 'active fraction' else 'activation ratio at CETT ' || replace(param, 'target=', '') end as measure,
       value as fraction
from sparsity
where layer is not null and ((metric = 'active_fraction' and param = 'mean') or metric = 'activation_ratio_at_target')
order by measure, model, layer
