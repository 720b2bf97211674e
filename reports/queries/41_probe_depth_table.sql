-- section: Probing
-- title: Concept depth: best layer and the first layer within 90% of it
-- note: Per model and concept (mean pooling): the layer where the probe is most accurate, the first layer reaching 90% of that accuracy, and the probe's selectivity at the best layer (accuracy minus the control task's, Hewitt and Liang): high selectivity means the model, not the probe, carries the concept.
select model, tier, concept, best_layer, depth_layer, round(best_depth, 2) as best_depth,
       round(best_accuracy, 3) as best_accuracy, round(best_selectivity, 3) as selectivity
from concept_depth
where pooling = 'mean'
order by model, case tier when 'corpus' then 0 when 'factual' then 1 when 'emotional' then 2 else 3 end, concept
